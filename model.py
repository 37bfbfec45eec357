"""The Conv1D+LSTM hybrid, built by one function from its settings.

Layer stack for the default settings (input: one preprocessed light curve, two detrendings)::

    Input                      (3197, 2)   detrended flux in units of its own noise
    Conv1D 16, k=7, ReLU  ->  MaxPool 4     (799, 16)   local shapes: ingress, egress, spikes
    Conv1D 32, k=7, ReLU  ->  MaxPool 4     (199, 32)   transit-length features
    Conv1D 64, k=7, ReLU  ->  MaxPool 4     (49, 64)    about 1.3 days per step
    LSTM 64                                 (64,)       repetition and spacing of dips
      beside it, from the input:
      HarmonicPower 12                      (1319, 12)  power at 12 harmonics of 1319 trial periods
      Conv1D 16, k=1, ReLU (twice)          (1319, 16)  weighted harmonic sums at each period
      GlobalMaxPool                         (16,)       the strongest period's
    Concatenate                             (80,)
    Dense 64, ReLU -> Dropout 0.3           (64,)
    Dense 1, sigmoid                        (1,)        probability of a planet host

The convolutions shorten the sequence 64-fold before the LSTM, whose cost grows with the
sequence length; the LSTM sees about 1.3 days per step, enough to relate transits days apart,
but too coarse to add up the many shallow transits of a short-period planet. The spectrum
branch (``spectrum_harmonics``, ``spectrum.py``) adds them up: a train of narrow dips puts its
power at the harmonics of its period wherever the dips are. Measured side by side with the
network without it (docs/detector_levers.md), on 800 unseen hosts, two training seeds: PR AUC
+0.016-0.018, recall at S/N >= 12 at a 1 % false-positive rate +0.015-0.026, recall at
precision 0.9 +0.010-0.011; for epochs 1.19 times as long (``bench/spectrum_cost.py``), so
the default run stops at 60 epochs to stay within 15 minutes.
``spectrum_harmonics`` = 0 builds the network without it (1.11's default).

Options, off by default because they did not win when measured side by side
(docs/detector_levers.md): ``global_pooling`` (global max and average pools beside the LSTM:
best validation ROC AUC 0.866 -> 0.906, but on unseen curves ROC AUC 0.803 -> 0.800 and twice the
false-positive rate on diluted eclipsing binaries; measured before the injected binaries),
``convs_per_stage`` > 1 with ``batch_norm`` (a deeper front end, 2.3 times as long per epoch on
2 cores), and ``bidirectional`` (the LSTM reads the steps both ways: on unseen curves ROC AUC
0.826 -> 0.812 and PR AUC 0.609 -> 0.592; measured with random views and four-view scoring).
With the same, the global pools scored ROC AUC 0.823 and PR AUC 0.609 and doubled the run.
``spectrum_coherent`` (the spectrum branch also folds the curve at each trial period, summing
the harmonics in phase): on 800 unseen hosts (seed 42) ROC AUC +0.003, PR AUC +0.000, recall at
precision 0.9 -0.014, none clearing zero, for epochs 1.12 times as long.

Weight averaging (``ema_momentum``, default 0.999: about the last 1000 steps, two epochs of the
default run): Adam keeps an exponential moving average of the weights (Polyak averaging, Keras'
``use_ema``); validation measures the averaged weights (``keras.callbacks.SwapEMAWeights``), and
the saved files hold both, so training resumes exactly and ``evaluation.load_model_file``
predicts with the average. Measured side by side with it off (docs/detector_levers.md): a smooth
validation curve (epoch-to-epoch changes of at most 0.009 instead of 0.05 in the default run)
and, on unseen curves, better scores for one training seed and about the same for another.

Compiled with Adam and binary cross-entropy; reports accuracy, ROC AUC (``auc``), PR AUC
(``pr_auc``), precision and recall. Class imbalance is handled by the training loop
(per-sample class weights), not here.

``predict_scores`` scores curves as the mean of the model's output over four views of each
(``views``: as it is, reversed in time, and both shifted by half the window), batch by batch
with ``predict_on_batch``: ``model.predict``
builds a tf.data pipeline that, under op determinism, logs an error line (a graph rewrite drops
an attribute) and costs a pipeline per call.

TensorFlow is imported inside ``build_model`` so that the data stages and ``--status`` start
without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fingerprints

@dataclass(frozen=True)
class ModelConfig:
    conv_filters: tuple[int, ...] = (16, 32, 64)  # one stage each, ending in a max pooling
    convs_per_stage: int = 1
    kernel_size: int = 7
    pool_size: int = 4
    batch_norm: bool = False      # batch normalisation after each convolution (then without bias)
    lstm_units: int = 64
    bidirectional: bool = False   # the LSTM reads the steps both ways (Keras' Bidirectional)
    global_pooling: bool = False  # global max and average pools beside the LSTM
    spectrum_harmonics: int = 12  # a branch reading the power at each trial period's first harmonics (spectrum.py); 0: off
    spectrum_coherent: bool = False  # the branch also folds: the harmonics summed in phase at each trial period (spectrum.py)
    dense_units: int = 64
    dropout: float = 0.3
    learning_rate: float = 1e-3
    ema_momentum: float = 0.999   # weights averaged (Polyak, the optimizer's EMA) for validation and the saved model; 0: off

    def __post_init__(self):
        # JSON (--config) gives lists; keep the config hashable and comparable.
        object.__setattr__(self, "conv_filters", tuple(int(f) for f in self.conv_filters))
        if not self.conv_filters or min(self.conv_filters) < 1:
            raise ValueError(f"conv_filters must be a non-empty list of positive sizes, got {list(self.conv_filters)}")
        for name in ("convs_per_stage", "kernel_size", "pool_size", "lstm_units", "dense_units"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if int(self.spectrum_harmonics) < 0:
            raise ValueError(f"spectrum_harmonics must be 0 (off) or a positive integer, got {self.spectrum_harmonics}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.learning_rate < 1.0:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum}")

    def fingerprint(self) -> dict:
        """The settings a checkpoint records (``training.training_fingerprint``).

        A setting added since 1.2 is left out at the value that trains as before it, so an older
        checkpoint keeps its fingerprint (a 1.2 one resumes with ``{"model": {"ema_momentum": 0}}``).
        """
        # Without a branch, there is nothing to fold: the setting changes nothing, so it is left out.
        no_branch = () if self.spectrum_harmonics else ("spectrum_coherent",)
        return fingerprints.settings(self, _ADDED_SINCE_1_2, leave_out=no_branch)


# Settings added since 1.2, with the value that leaves training as it was before them.
_ADDED_SINCE_1_2 = {"ema_momentum": 0.0, "bidirectional": False, "spectrum_harmonics": 0, "spectrum_coherent": False}


def build_model(config: ModelConfig, sequence_length: int, channels: int = 1):
    """A compiled Keras model for inputs of shape (sequence_length, channels).

    Raises:
        ValueError: if the pooling would shorten the sequence to nothing.
    """
    import keras

    steps = sequence_length
    for _ in config.conv_filters:
        steps //= config.pool_size
    if steps < 1:
        raise ValueError(f"{len(config.conv_filters)} poolings of {config.pool_size} leave nothing of "
                         f"{sequence_length} cadences; use fewer conv_filters or a smaller pool_size")
    if config.spectrum_harmonics:
        from spectrum import harmonic_index

        if not len(harmonic_index(sequence_length, 1)[0]):
            raise ValueError(f"spectrum_harmonics {config.spectrum_harmonics}: a window of {sequence_length} cadences "
                             f"holds no trial period twice (0.5 days at the shortest); use longer windows or "
                             f"{{\"model\": {{\"spectrum_harmonics\": 0}}}}")
    inputs = keras.Input(shape=(sequence_length, channels), name="light_curve")
    x = inputs
    for stage, filters in enumerate(config.conv_filters, start=1):
        for number in range(1, config.convs_per_stage + 1):
            name = f"conv{stage}" + (f"_{number}" if config.convs_per_stage > 1 else "")
            # With batch normalisation, its shift replaces the convolution's bias and the ReLU follows it.
            x = keras.layers.Conv1D(filters, config.kernel_size, padding="same", use_bias=not config.batch_norm,
                                    activation=None if config.batch_norm else "relu", name=name)(x)
            if config.batch_norm:
                x = keras.layers.BatchNormalization(name=f"{name}_norm")(x)
                x = keras.layers.ReLU(name=f"{name}_relu")(x)
        x = keras.layers.MaxPooling1D(config.pool_size, name=f"pool{stage}")(x)
    lstm = keras.layers.LSTM(config.lstm_units, name="lstm")
    features = keras.layers.Bidirectional(lstm, name="bidirectional_lstm")(x) if config.bidirectional else lstm(x)
    if config.global_pooling:
        features = keras.layers.Concatenate(name="features")([
            features, keras.layers.GlobalMaxPooling1D(name="strongest")(x),
            keras.layers.GlobalAveragePooling1D(name="typical")(x)])
    if config.spectrum_harmonics:
        from spectrum import harmonic_power_layer

        # The power at each trial period's harmonics; two profiles over the harmonics at each
        # period (weighted harmonic sums, then their mixtures), and the strongest period's. The
        # first version (24 harmonics, the second convolution over 5 neighbouring periods) made
        # epochs 1.6 times as long for about the same gains (docs/detector_levers.md).
        spectrum = harmonic_power_layer()(config.spectrum_harmonics, sequence_length, coherent=config.spectrum_coherent,
                                          name="harmonic_power")(inputs)
        spectrum = keras.layers.Conv1D(16, 1, activation="relu", name="harmonic_profile")(spectrum)
        spectrum = keras.layers.Conv1D(16, 1, activation="relu", name="harmonic_mix")(spectrum)
        features = keras.layers.Concatenate(name="with_spectrum")([
            features, keras.layers.GlobalMaxPooling1D(name="strongest_period")(spectrum)])
    x = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(features)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="planet_probability")(x)
    model = keras.Model(inputs, outputs, name="exoplanet_cnn_lstm")
    compile_model(model, config)
    # The optimizer's slots now, not in the first training step: a tf.function whose first trace
    # creates variables is traced a second time, which made the default network's first step
    # take 5.4 s to set up instead of 2.4 s (bench/first_epoch.py, 2-core Xeon). Same zeros,
    # same results, bit for bit.
    model.optimizer.build(model.trainable_variables)
    return model


def compile_model(model, config: ModelConfig) -> None:
    """Compile ``model`` for training: Adam (weight averaging per ``config.ema_momentum``),
    binary cross-entropy, and the metrics the history records. The optimizer is not built."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate, use_ema=config.ema_momentum > 0,
                                        ema_momentum=config.ema_momentum),
        loss="binary_crossentropy",
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(curve="ROC", name="auc"),
            keras.metrics.AUC(curve="PR", name="pr_auc"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
        ],
    )


def load_saved_model(path):
    """A saved model, loaded with Keras' ``safe_mode`` (no code from the file runs). This
    project's own layers (``spectrum.HarmonicPower``) are registered first: safe_mode loads them
    by name. Raises whatever Keras raises for a file it cannot load."""
    import keras

    from spectrum import harmonic_power_layer

    harmonic_power_layer()
    return keras.models.load_model(path, safe_mode=True)


def views(batch: np.ndarray) -> np.ndarray:
    """The four views of each curve that ``predict_scores`` averages, stacked: [4 * rows, ...].

    The curve as it is, reversed in time, and both shifted circularly by half the window: a
    transit is the same dip read backwards (the training host copies are reversed and shifted
    too), and where in the window it falls says nothing of it.
    """
    half = batch.shape[1] // 2
    shifted = np.roll(batch, half, axis=1)
    return np.concatenate([batch, batch[:, ::-1], shifted, shifted[:, ::-1]])


def predict_scores(model, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The planet-host probability of each curve, float64: the model's output averaged over the
    curve's four ``views``, the one scorer of validation thresholds, test metrics, completeness
    and ``--predict``.

    Averaging the views steadies the network's score: on 5000 unseen built-in curves the default
    model's PR AUC rose from 0.572 to 0.595 and its ROC AUC from 0.810 to 0.813
    (docs/detector_levers.md).
    """
    scores = np.empty(len(inputs), dtype=np.float64)
    for start in range(0, len(inputs), batch_size):
        batch = np.asarray(inputs[start:start + batch_size])
        output = np.asarray(model.predict_on_batch(views(batch)), dtype=np.float64)[:, 0]
        scores[start:start + len(batch)] = output.reshape(4, len(batch)).mean(axis=0)
    return scores

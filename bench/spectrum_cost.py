#!/usr/bin/env python3
"""What the spectrum branch costs a training step, and what its layout saves.

The default network with and without its spectrum branch (``ModelConfig.spectrum_harmonics``),
and with the branch's first version (a second convolution over 5 neighbouring periods instead
of a 1-wide one), each trained on the same batches of two-channel curves (3197 cadences, batch
32) under TensorFlow's op determinism, as the trainer trains; one epoch of ``--batches``
batches each, the variants alternating within each repetition, after a first epoch each for
tracing. Then the ``HarmonicPower`` layer alone on a batch: as it computes (the spectrum
transposed, so the harmonics are gathered along the first axis) against the first version's
layout (gathered along the second). Medians of the ratios to the network without the branch,
and to the first layout.

    python3 bench/spectrum_cost.py              # 5 repeats of 60 batches
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import machine, write_result


def network(kind: str, harmonics: int, length: int, channels: int):
    import keras

    from model import ModelConfig, build_model

    keras.utils.set_random_seed(1)
    if kind == "without the branch":
        return build_model(ModelConfig(spectrum_harmonics=0), length, channels)
    model = build_model(ModelConfig(spectrum_harmonics=harmonics), length, channels)
    if kind == "branch as first built":
        # The same network with the first version's second convolution, over 5 neighbouring periods.
        profile = model.get_layer("harmonic_profile").output
        periods = keras.layers.Conv1D(16, 5, padding="same", activation="relu")(profile)
        strongest = keras.layers.GlobalMaxPooling1D()(periods)
        lstm = model.get_layer("lstm").output
        features = keras.layers.Concatenate()([lstm, strongest])
        hidden = keras.layers.Dropout(0.3)(keras.layers.Dense(64, activation="relu")(features))
        outputs = keras.layers.Dense(1, activation="sigmoid")(hidden)
        first = keras.Model(model.inputs, outputs)
        first.compile(optimizer=keras.optimizers.Adam(use_ema=True, ema_momentum=0.999), loss="binary_crossentropy",
                      metrics=[keras.metrics.BinaryAccuracy(), keras.metrics.AUC(curve="ROC"),
                               keras.metrics.AUC(curve="PR"), keras.metrics.Precision(), keras.metrics.Recall()])
        return first
    return model


def first_layout(layer, inputs):
    """``HarmonicPower`` as its first version computed it: [batch, bins], gathered along the second axis."""
    from keras import ops

    from spectrum import CAP, WHITEN_BINS

    flux = inputs[:, :, 0]
    flux = flux - ops.mean(flux, axis=1, keepdims=True)
    real, imag = ops.rfft(flux, fft_length=layer.fft_length)
    power = real * real + imag * imag
    padded = ops.pad(power, [[0, 0], [WHITEN_BINS, WHITEN_BINS]], mode="reflect")
    total = ops.cumsum(padded, axis=1)
    width = layer.fft_length // 2 + 1
    white = power / ((total[:, 2 * WHITEN_BINS:2 * WHITEN_BINS + width] - total[:, :width]) / (2 * WHITEN_BINS) + 1e-6)
    highest = ops.maximum(white, ops.maximum(ops.roll(white, 1, axis=1), ops.roll(white, -1, axis=1)))
    at_harmonics = ops.take(highest, ops.convert_to_tensor(layer.index.ravel()), axis=1)
    return ops.minimum(ops.reshape(at_harmonics, (-1,) + layer.index.shape) * ops.convert_to_tensor(layer.inside), CAP)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import quiet_tensorflow  # noqa: F401  (before TensorFlow's first import)
    import tensorflow as tf

    from model import ModelConfig
    from spectrum import harmonic_power_layer

    tf.config.experimental.enable_op_determinism()
    harmonics, length, channels, batch = ModelConfig().spectrum_harmonics or 12, 3197, 2, 32
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batches * batch, length, channels)).astype("float32")
    y = (rng.random(len(x)) < 0.3).astype("float32")
    kinds = ("without the branch", "branch", "branch as first built")
    models = {kind: network(kind, harmonics, length, channels) for kind in kinds}
    seconds = {kind: [] for kind in kinds}
    for kind in kinds:
        models[kind].fit(x, y, batch_size=batch, epochs=1, verbose=0)
    for _ in range(args.repeats):
        for kind in kinds:
            start = time.perf_counter()
            models[kind].fit(x, y, batch_size=batch, epochs=1, verbose=0)
            seconds[kind].append(time.perf_counter() - start)

    layer = harmonic_power_layer()(harmonics, length)
    layouts = {"as computed": tf.function(layer.call), "first layout": tf.function(lambda b: first_layout(layer, b))}
    sample = tf.constant(x[:batch])
    if not np.array_equal(layouts["as computed"](sample).numpy(), layouts["first layout"](sample).numpy()):
        raise SystemExit("the two layouts computed different powers")
    layer_seconds = {name: [] for name in layouts}
    for _ in range(args.repeats):
        for name, call in layouts.items():
            call(sample)
            start = time.perf_counter()
            for _ in range(50):
                call(sample)
            layer_seconds[name].append((time.perf_counter() - start) / 50)

    base = np.array(seconds["without the branch"])
    result = {"batches": args.batches, "batch_size": batch, "repeats": args.repeats, "harmonics": harmonics,
              "epoch_seconds": seconds, "layer_seconds_per_batch": layer_seconds,
              "median_ratio_to_without": {kind: float(np.median(np.array(seconds[kind]) / base)) for kind in kinds},
              "median_layer_ratio_first_to_computed": float(np.median(
                  np.array(layer_seconds["first layout"]) / np.array(layer_seconds["as computed"]))),
              "machine": machine()}
    print(f"{'network':28}{'median epoch (s)':>18}{'ratio to without':>18}")
    for kind in kinds:
        print(f"{kind:28}{np.median(seconds[kind]):18.2f}{result['median_ratio_to_without'][kind]:18.3f}")
    print(f"HarmonicPower alone, a batch of {batch}: {1e3 * np.median(layer_seconds['as computed']):.2f} ms as "
          f"computed, {1e3 * np.median(layer_seconds['first layout']):.2f} ms in the first layout (ratio "
          f"{result['median_layer_ratio_first_to_computed']:.2f}, the same values); {args.batches} batches, "
          f"{args.repeats} repeats, {harmonics} harmonics; {result['machine']}")
    print(f"written to {write_result('spectrum_cost', result)}")


if __name__ == "__main__":
    main()

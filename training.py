"""Stages [5/7] and [6/7]: build (or restore) the model, then train it one epoch at a time.

Exact resume. A run interrupted any number of times and rerun ends with the same weights, bit
for bit, as the same run never interrupted (same seed, same machine, CPU), because everything
an epoch depends on is either saved or a pure function of (seed, epoch):
    weights, optimizer moments and iteration count   saved in model_checkpoint.keras
    metric history, best value and its epoch         saved in the same file (training_state.json)
    early stopping                                   derived from that history
    batch order                                      permutation drawn from (seed, epoch)
    dropout masks                                    every Keras SeedGenerator state is set from
                                                     (seed, epoch) before the epoch (their state is
                                                     not saved in .keras files)
The whole run is one ``model.fit(..., initial_epoch=first, epochs=last)`` call, as in a plain
Keras script, on one dataset that yields the epochs' batches back to back, each epoch in its own
order: Keras may prefetch the next epoch's batches while the checkpoint is written, and they
are the right ones because the order comes from (seed, epoch) inside the dataset, never from a
callback. (A fit call per epoch cost up to 0.7 s per epoch tearing its input pipeline down.)
A callback resets the dropout seeds at the start of each epoch, before its first step.
TensorFlow's op determinism is switched on, so CPU kernels give the same bits every run.

Interrupts. Ctrl-C (SIGINT) or SIGTERM stops at the end of the batch in progress, or, while a
checkpoint is being written, once it is complete; the last completed epoch stays saved and exit
codes are 130 and 143. A second Ctrl-C exits immediately, which is as safe as a kill: every write is atomic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import atomic_io
from checkpoint_callback import CheckpointError, CheckpointStore, TrainingState, make_checkpoint_callback
from errors import Interrupted, TrainerError
from preprocessing import available_cores

log = logging.getLogger(__name__)

# Room to leave free beyond a checkpoint set, for the log and the results.
DISK_HEADROOM_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 100
    batch_size: int = 32
    early_stopping_patience: int = 20   # stop after this many epochs without a better val_auc; 0: never

    def __post_init__(self):
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        if int(self.early_stopping_patience) < 0:
            raise ValueError(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}")


def training_fingerprint(model_config, training_config: TrainingConfig, seed: int, data_fingerprint: dict) -> dict:
    """Settings a checkpoint is only valid for. ``epochs`` is not one: raising it extends a run."""
    data_digest = hashlib.sha256(json.dumps(data_fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    training = dataclasses.asdict(training_config)
    training.pop("epochs")
    # Through JSON, as the checkpoint stores it: tuples compare as the lists they come back as.
    return json.loads(json.dumps({"model": dataclasses.asdict(model_config), "training": training, "seed": seed,
                                  "data": data_digest}))


def check_checkpoint(settings, data_fingerprint: dict) -> None:
    """Before anything is written: refuse now if stage 5 would refuse the checkpoint.

    Raises:
        CheckpointMismatch, CheckpointError: as ``CheckpointStore.restore``.
    """
    if not settings.fresh:
        fingerprint = training_fingerprint(settings.model, settings.training, settings.seed, data_fingerprint)
        CheckpointStore(settings.paths.checkpoint_dir).check(fingerprint)


@dataclass
class PreparedModel:
    model: object
    state: TrainingState
    store: CheckpointStore
    resumed: bool


def prepare_model(settings, data, store: CheckpointStore | None = None) -> PreparedModel:
    """Stage [5/7]: restore the model from the checkpoint, or build a new one.

    Raises:
        CheckpointMismatch: the checkpoint was made with other model or training settings.
        CheckpointError: checkpoint files exist but none can be used.
    """
    from quiet_tensorflow import import_tensorflow

    import_tensorflow()
    import keras
    import tensorflow as tf

    paths = settings.paths
    store = store or CheckpointStore(paths.checkpoint_dir)
    if settings.fresh:
        removed = store.remove_all()
        if paths.best_model_file.exists() or paths.best_model_file.is_symlink():
            atomic_io.remove(paths.best_model_file)
            removed.append(paths.best_model_file)
        log.info("--fresh: removed %s", ", ".join(str(p) for p in removed) if removed else "nothing (no checkpoint)")
        log.info("  (the cached training data %s is kept; it is rebuilt whenever data or settings change)",
                 paths.cache_file)
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    fingerprint = training_fingerprint(settings.model, settings.training, settings.seed, data.fingerprint)
    restored = store.restore(fingerprint)
    if restored is None:
        log.info("No checkpoint found - starting fresh training")
        model = _build(settings, data)
        state = TrainingState(fingerprint=fingerprint)
        resumed = False
    else:
        path, state = restored
        log.info("=" * 60)
        log.info("CHECKPOINT FOUND - RESUMING TRAINING")
        log.info("  Last completed epoch: %d", state.epoch)
        if state.epoch < settings.training.epochs and not _stopped_early(state, settings.training):
            log.info("  Resuming from epoch %d...", state.epoch + 1)
        try:
            model = keras.models.load_model(path, safe_mode=True)
        except Exception as error:  # Keras raises many kinds; any of them means this file is unusable
            raise CheckpointError(
                f"{path} passes its checks but Keras cannot load it ({str(error).splitlines()[0][:120]}); "
                f"restore it from a backup, or start over with --fresh") from None
        log.info("  Model, optimizer state and history of %d epochs restored from %s", state.epoch, path)
        log.info("=" * 60)
        resumed = True
    model.summary(print_fn=lambda line, *args, **kwargs: log.info(line))
    return PreparedModel(model=model, state=state, store=store, resumed=resumed)


def _build(settings, data):
    from model import build_model

    shape = data.inputs("train").shape
    try:
        return build_model(settings.model, sequence_length=shape[1], channels=shape[2])
    except ValueError as error:
        raise TrainerError(f"model settings: {error}") from None


def _stopped_early(state: TrainingState, config: TrainingConfig) -> bool:
    patience = config.early_stopping_patience
    return patience > 0 and state.best_epoch > 0 and state.epoch - state.best_epoch >= patience


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-class weights n / (2 * n_class) ("balanced"): each class contributes equally to the loss."""
    counts = np.bincount(labels.astype(np.int64), minlength=2).astype(np.float64)
    return labels.size / (2.0 * np.maximum(counts, 1.0))


def epoch_order(seed: int, epoch: int, rows: int) -> np.ndarray:
    """The batch order of one epoch: a pure function of (seed, epoch), so a resumed run replays it."""
    return np.random.default_rng([seed, 4, epoch]).permutation(rows)


def reset_random_state(model, seed: int, epoch: int) -> int:
    """Set every SeedGenerator state of the model (dropout) from (seed, epoch); returns how many."""
    generators = [v for v in model.variables if "seed_generator_state" in v.path]
    for number, variable in enumerate(generators):
        values = np.random.default_rng([seed, 5, epoch, number]).integers(0, 2**31 - 1, variable.shape)
        variable.assign(values.astype(variable.dtype))
    return len(generators)


def shared_tensor(array: np.ndarray):
    """(tensor, array): a TensorFlow tensor and a NumPy array holding the same buffer.

    ``tf.constant`` copies, and was measured to hold a second, transient copy too; DLPack shares
    the memory instead, but TensorFlow needs 64-byte aligned buffers: an array that is not
    aligned (or not writable) is copied once into one that is (the cache loads aligned ones).
    Neither side may be written to afterwards.
    """
    import tensorflow as tf

    from data_cache import aligned_empty

    if array.ctypes.data % 64 or not array.flags.writeable or not array.flags.c_contiguous:
        aligned = aligned_empty(array.shape, array.dtype)
        aligned[...] = array
        array = aligned
    return tf.experimental.dlpack.from_dlpack(array.__dlpack__()), array


class EpochRunner:
    """Training whose batch order and dropout masks depend only on (seed, epoch).

    The training and validation curves are shared with TensorFlow once (``train_inputs`` and
    ``val_inputs`` are the NumPy arrays behind the tensors). ``fit`` trains a range of epochs in
    one Keras fit call on a dataset built for exactly those epochs.
    """

    def __init__(self, x_train, y_train, x_val, y_val, batch_size: int, seed: int):
        import tensorflow as tf

        self.rows, self.batch_size, self.seed = len(y_train), batch_size, seed
        self.steps_per_epoch = -(-self.rows // batch_size)
        self.class_weights = class_weights(y_train)
        self.inputs, self.train_inputs = shared_tensor(x_train)
        self.targets = tf.constant(y_train.astype(np.float32)[:, None])
        self.sample_weights = tf.constant(self.class_weights[y_train.astype(np.int64)].astype(np.float32))
        self.val_tensor, self.val_inputs = shared_tensor(x_val)
        self.val_targets = tf.constant(y_val.astype(np.float32)[:, None])
        self.val_rows = len(y_val)
        # Fixed parallelism, no autotuning: the autotuner's thread sleeps for intervals that
        # grow to a minute, and tearing a pipeline down waits for it to wake (measured: 2 to
        # 39 s after early stopping, 0.7 s per epoch when each epoch had its own pipeline).
        self.options = tf.data.Options()
        self.options.autotune.enabled = False
        self.parallel_gathers = available_cores()

    def validation(self):
        """The validation batches, in order, gathered from the shared tensor."""
        import tensorflow as tf

        def take(batch):
            start = batch * self.batch_size
            index = tf.range(start, tf.minimum(start + self.batch_size, self.val_rows))
            return tf.gather(self.val_tensor, index), tf.gather(self.val_targets, index)

        return (tf.data.Dataset.range(-(-self.val_rows // self.batch_size)).map(take).prefetch(2)
                .with_options(self.options))

    def batches(self, first_epoch: int, last_epoch: int):
        """The batches of epochs ``first_epoch`` to ``last_epoch - 1`` (counted from 0), in order."""
        import tensorflow as tf

        def gather(rows):
            return tf.gather(self.inputs, rows), tf.gather(self.targets, rows), tf.gather(self.sample_weights, rows)

        # Every epoch's order, computed up front (4 bytes per curve and epoch): a generator
        # would put a stateful op in the pipeline, and under op determinism tf.data then runs
        # the whole pipeline serially, without prefetching. Each epoch is batched on its own,
        # so its last, short batch never mixes with the next epoch's rows. The parallel
        # gathers keep their order (tf.data is deterministic by default).
        orders = np.stack([epoch_order(self.seed, epoch, self.rows) for epoch in range(first_epoch, last_epoch)])
        return (tf.data.Dataset.from_tensor_slices(orders.astype(np.int32))
                .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(self.batch_size))
                .map(gather, num_parallel_calls=self.parallel_gathers).prefetch(2).with_options(self.options))

    def fit(self, model, first_epoch: int, last_epoch: int, callbacks: list, verbose: int = 0):
        """Train epochs ``first_epoch + 1`` to ``last_epoch`` (counted from 1), validating after each.

        Returns the Keras History. A callback that sets ``model.stop_training`` ends it early.
        """
        import keras

        seed = self.seed

        class ResetRandomState(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                reset_random_state(self.model, seed, epoch)

        return model.fit(self.batches(first_epoch, last_epoch), steps_per_epoch=self.steps_per_epoch,
                         validation_data=self.validation(), initial_epoch=first_epoch, epochs=last_epoch,
                         callbacks=[ResetRandomState(), *callbacks], verbose=verbose, shuffle=False)


class InterruptGuard:
    """SIGINT/SIGTERM handling: stop at the next batch, or right after a checkpoint write.

    The handler only records the signal. Raising from it would land in whatever bytecode runs
    at that instant, and TensorFlow's own code catches and rewraps exceptions there (seen: a
    TypeError from tf.function's argument binding, exit code 1). ``check`` raises
    ``Interrupted`` at a clean point instead: the callback from ``callback()`` calls it after
    every training and validation batch (milliseconds apart), the checkpoint write right after
    it completes, and the training loop once more when fit returns.
    """

    def __init__(self):
        self.pending: int | None = None
        self.saving = False
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame):
        if self.pending is not None:
            # Second signal: leave now. Files are written atomically, so this is as safe as a kill.
            os.write(2, b"\nSecond interrupt - exiting immediately.\n")
            os._exit(128 + signum)
        self.pending = signum
        if self.saving:
            os.write(2, b"\nInterrupt received - finishing the checkpoint write first...\n")

    def check(self) -> None:
        if self.pending is not None and not self.saving:
            raise Interrupted(self.pending)

    def callback(self):
        import keras

        guard = self

        class StopOnSignal(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                guard.check()

            def on_test_batch_end(self, batch, logs=None):
                guard.check()

        return StopOnSignal()

    @contextlib.contextmanager
    def critical(self):
        self.saving = True
        try:
            yield
        finally:
            self.saving = False
        self.check()


def check_disk_space(folder: Path, model) -> None:
    """Stop before training if a checkpoint set (two model files and a temporary) won't fit."""
    folder.mkdir(parents=True, exist_ok=True)
    # Five model files (current, previous, temporary, best in the set and in models/), each the
    # weights plus Adam's two moments in float32, plus the zip and config overhead.
    set_size = 5 * (3 * 4 * model.count_params() + 200 * 1024)
    free = shutil.disk_usage(folder).free
    if free < set_size + DISK_HEADROOM_BYTES:
        raise CheckpointError(f"only {free / 1e6:.0f} MB free in {folder}; checkpoints need about "
                              f"{(set_size + DISK_HEADROOM_BYTES) / 1e6:.0f} MB: free some space and rerun")


def _epoch_line(state: TrainingState, total: int, improved: bool) -> str:
    last = {name: values[-1] for name, values in state.history.items()}
    shown = " - ".join(f"{name} {last[name]:.4f}" for name in
                       ("loss", "auc", "pr_auc", "val_loss", "val_auc", "val_pr_auc", "val_precision", "val_recall")
                       if name in last)
    return (f"Epoch {state.epoch}/{total} - {shown} - {last.get('epoch_seconds', float('nan')):.1f}s - "
            f"checkpoint saved{' - new best model' if improved else ''}")


def train(prepared: PreparedModel, data, settings) -> TrainingState:
    """Stage [6/7]: train from the epoch after the checkpoint's to ``settings.training.epochs``.

    Raises:
        Interrupted: on Ctrl-C / SIGTERM (after the last completed epoch is safely saved).
        CheckpointError: if a checkpoint cannot be written.
    """
    import keras

    model, state, store = prepared.model, prepared.state, prepared.store
    config, seed, total = settings.training, settings.seed, settings.training.epochs
    if _stopped_early(state, config):
        log.info("Training already finished: stopped early at epoch %d (no better val_auc since epoch %d) "
                 "- going straight to evaluation", state.epoch, state.best_epoch)
        return state
    if state.epoch >= total:
        log.info("Training already finished: %d of %d epochs done - going straight to evaluation", state.epoch, total)
        return state
    check_disk_space(settings.paths.checkpoint_dir, model)
    if prepared.resumed:
        state.resumed_after.append(state.epoch)
    log.info("Starting from epoch: %d/%d", state.epoch + 1, total)

    runner = EpochRunner(data.inputs("train"), data.labels("train"), data.inputs("val"), data.labels("val"),
                         config.batch_size, seed)
    # The runner's tensors share their buffers with (aligned copies of) these arrays; pointing
    # the data at them drops the other copy (0.34 GB for training at the seed's scale). The
    # input pipeline holds one more: tf.data copies captured tensors under op determinism.
    data.splits["train"].flux, data.splits["val"].flux = runner.train_inputs, runner.val_inputs
    log.info("Training on %d curves (%d planet hosts), validating on %d; class weights %.2f (non-host) / %.2f (host)",
             runner.rows, int(data.labels("train").sum()), len(data.labels("val")), *runner.class_weights)

    class RunLog(keras.callbacks.Callback):
        """The first batch, then after each checkpoint the epoch's line; stops early when due."""

        def __init__(self):
            super().__init__()
            self.started = False

        def on_train_batch_begin(self, batch, logs=None):
            if not self.started:
                self.started = True
                log.info("First training batch of this run started")

        def on_epoch_end(self, epoch, logs=None):
            log.info(_epoch_line(state, total, checkpoint.improved))
            if _stopped_early(state, config):
                log.info("Early stopping: no better val_auc in %d epochs (best %.4f at epoch %d)",
                         config.early_stopping_patience, state.best_value, state.best_epoch)
                self.model.stop_training = True

    with InterruptGuard() as guard:
        checkpoint = make_checkpoint_callback(store, state, settings.paths.best_model_file, guard.critical)
        interactive = sys.stdout.isatty()
        # Keras' progress bar, placed so it finishes its line before the epoch's log line.
        progress = [keras.callbacks.ProgbarLogger()] if interactive else []
        try:
            runner.fit(model, state.epoch, total, [guard.callback(), checkpoint, *progress, RunLog()],
                       verbose=1 if interactive else 0)
            guard.check()  # a signal after the last batch
        except (Interrupted, KeyboardInterrupt) as interrupt:
            signum = getattr(interrupt, "signum", signal.SIGINT)
            saved = {0: "No epoch was completed yet", 1: "Epoch 1 is saved"}.get(
                state.epoch, f"Epochs 1-{state.epoch} are saved")
            raise Interrupted(signum, (
                f"Interrupted ({signal.Signals(signum).name}) during epoch {state.epoch + 1}. {saved} in "
                f"{settings.paths.checkpoint_dir}. Rerun the same command to resume from epoch {state.epoch + 1}."
            )) from None
    # Drop the input pipelines before evaluation: under op determinism tf.data holds its own
    # copy of the curves. (No change in the measured peak at the seed's scale; the freed heap
    # after stage 4 is what lowered it.)
    del runner
    gc.collect()
    log.info("Training finished: %d epochs; best val_auc %.4f at epoch %d, saved as %s",
             state.epoch, state.best_value if state.best_value is not None else float("nan"),
             state.best_epoch, settings.paths.best_model_file)
    return state


def status_report(checkpoint_dir: Path, total_epochs: int) -> list[str]:
    """Lines describing training progress, read from the checkpoint without TensorFlow."""
    state, problems = CheckpointStore(checkpoint_dir).first_readable()
    lines = [f"{path}: damaged ({why})" for path, why in problems]
    if state is None:
        if problems:
            return lines + ["No usable checkpoint; a training run will say what to do."]
        return [f"No checkpoint in {checkpoint_dir}: training has not started (or was reset)."]
    lines += [f"Checkpoint: {checkpoint_dir}", f"Last completed epoch: {state.epoch}/{total_epochs}"]
    if state.best_value is not None:
        lines.append(f"Best {state.monitor}: {state.best_value:.4f} at epoch {state.best_epoch}")
    last = {name: values[-1] for name, values in state.history.items()}
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in sorted(last.items()) if name != "epoch_seconds")
    lines.append(f"Last epoch's metrics: {metrics}")
    seconds = state.history.get("epoch_seconds", [])
    if seconds:
        lines.append(f"Average epoch time: {np.mean(seconds):.1f} s over {len(seconds)} epochs")
    if state.resumed_after:
        lines.append(f"Resumed after epochs: {', '.join(map(str, state.resumed_after))}")
    return lines

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
Each epoch is one ``model.fit(..., initial_epoch=e, epochs=e + 1)`` call on a dataset built for
that epoch: Keras prefetches the next epoch's batches before epoch callbacks run, so an order
changed from a callback could leak into the wrong epoch; here no dataset outlives its epoch.
TensorFlow's op determinism is switched on, so CPU kernels give the same bits every run.

Interrupts. Ctrl-C (SIGINT) or SIGTERM stops at once, except while a checkpoint is being
written, which completes first; the last completed epoch stays saved and exit codes are 130 and
143. A second Ctrl-C exits immediately, which is as safe as a kill: every write is atomic.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from checkpoint_callback import (CheckpointError, CheckpointStore, TrainingState, make_checkpoint_callback,
                                 read_state_from_model_file, CheckpointDamaged)
from errors import Interrupted, TrainerError

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


class SettingsChanged(TrainerError):
    """The checkpoint was made with other settings than this run's."""


def training_fingerprint(model_config, training_config: TrainingConfig, seed: int, data_fingerprint: dict) -> dict:
    """Settings a checkpoint is only valid for. ``epochs`` is not one: raising it extends a run."""
    data_digest = hashlib.sha256(json.dumps(data_fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    training = dataclasses.asdict(training_config)
    training.pop("epochs")
    return {"model": dataclasses.asdict(model_config) | {"conv_filters": list(model_config.conv_filters)},
            "training": training, "seed": seed, "data": data_digest}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += _differences(before, after, f"{prefix}{key}.")
        elif before != after:
            # The data entry is a digest: name it, its two hex values say nothing.
            changes.append("data (files or preprocessing settings)" if key == "data" and not prefix
                           else f"{prefix}{key}: {before} -> {after}")
    return changes


@dataclass
class PreparedModel:
    model: object
    state: TrainingState
    store: CheckpointStore
    resumed: bool


def prepare_model(settings, data, store: CheckpointStore | None = None) -> PreparedModel:
    """Stage [5/7]: restore the model from the checkpoint, or build a new one.

    Raises:
        SettingsChanged: the checkpoint was made with other model or training settings.
        CheckpointError: checkpoint files exist but none can be used.
    """
    import keras
    import tensorflow as tf

    paths = settings.paths
    store = store or CheckpointStore(paths.checkpoint_dir)
    if settings.fresh:
        removed = store.remove_all()
        if paths.best_model_file.exists():
            paths.best_model_file.unlink()
            removed.append(paths.best_model_file)
        log.info("--fresh: removed %s", ", ".join(str(p) for p in removed) if removed else "nothing (no checkpoint)")
        log.info("  (the cached training data %s is kept; it is rebuilt whenever data or settings change)",
                 paths.cache_file)
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    fingerprint = training_fingerprint(settings.model, settings.training, settings.seed, data.fingerprint)
    restored = store.restore()
    if restored is None:
        log.info("No checkpoint found - starting fresh training")
        model = _build(settings, data)
        state = TrainingState(fingerprint=fingerprint)
        resumed = False
    else:
        path, state = restored
        changes = _differences(state.fingerprint, fingerprint)
        if changes:
            raise SettingsChanged(
                f"the checkpoint in {paths.checkpoint_dir} (epoch {state.epoch}) was made with other settings: "
                f"{'; '.join(changes)}. Either rerun with the settings it was made with, or start over with "
                f"--fresh (deletes the checkpoint); the checkpoint is left untouched")
        log.info("=" * 60)
        log.info("CHECKPOINT FOUND - RESUMING TRAINING")
        log.info("  Last completed epoch: %d", state.epoch)
        if state.epoch < settings.training.epochs and not _stopped_early(state, settings.training):
            log.info("  Resuming from epoch %d...", state.epoch + 1)
        model = keras.models.load_model(path, safe_mode=True)
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


class EpochRunner:
    """One epoch of training whose batch order and dropout masks depend only on (seed, epoch).

    The training arrays become tensors once; each epoch gets its own dataset, gathering batches
    in that epoch's order, so nothing prefetched for one epoch can leak into another.
    """

    def __init__(self, x_train, y_train, x_val, y_val, batch_size: int, seed: int):
        import tensorflow as tf

        self.rows, self.batch_size, self.seed = len(y_train), batch_size, seed
        self.class_weights = class_weights(y_train)
        self.inputs = tf.constant(x_train)
        self.targets = tf.constant(y_train.astype(np.float32)[:, None])
        self.sample_weights = tf.constant(self.class_weights[y_train.astype(np.int64)].astype(np.float32))
        self.validation = tf.data.Dataset.from_tensor_slices(
            (x_val, y_val.astype(np.float32)[:, None])).batch(batch_size)

    def batches(self, epoch: int):
        import tensorflow as tf

        def gather(rows):
            return tf.gather(self.inputs, rows), tf.gather(self.targets, rows), tf.gather(self.sample_weights, rows)

        order = epoch_order(self.seed, epoch, self.rows)
        # Parallel gathers keep both cores busy (faster than a serial map side by side at 4,000
        # curves; bench/training_throughput.py shows no clear gain yet); tf.data keeps their
        # order (deterministic by default), so resume stays bit-identical.
        return (tf.data.Dataset.from_tensor_slices(order).batch(self.batch_size)
                .map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))

    def run(self, model, epoch: int, callbacks: list, verbose: int = 0):
        """Train epoch ``epoch`` (counted from 0) and validate; returns the Keras History."""
        reset_random_state(model, self.seed, epoch)
        return model.fit(self.batches(epoch), validation_data=self.validation, initial_epoch=epoch, epochs=epoch + 1,
                         callbacks=callbacks, verbose=verbose, shuffle=False)


class InterruptGuard:
    """SIGINT/SIGTERM handling: raise Interrupted at once, or right after a checkpoint write."""

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
        if not self.saving:
            raise Interrupted(signum)
        os.write(2, b"\nInterrupt received - finishing the checkpoint write first...\n")

    @contextlib.contextmanager
    def critical(self):
        self.saving = True
        try:
            yield
        finally:
            self.saving = False
        if self.pending is not None:
            raise Interrupted(self.pending)


def check_disk_space(folder: Path, model) -> None:
    """Stop before training if a checkpoint set (two model files and a temporary) won't fit."""
    folder.mkdir(parents=True, exist_ok=True)
    # Weights plus Adam's two moments, float32, plus the zip and config overhead.
    set_size = 3 * 3 * 4 * model.count_params() + 1024 * 1024
    free = shutil.disk_usage(folder).free
    if free < set_size + DISK_HEADROOM_BYTES:
        raise CheckpointError(f"only {free / 1e6:.0f} MB free in {folder}; checkpoints need about "
                              f"{(set_size + DISK_HEADROOM_BYTES) / 1e6:.0f} MB: free some space and rerun")


def _progress_bar(total_epochs: int):
    import keras

    class EpochProgbar(keras.callbacks.ProgbarLogger):
        """Keras' progress bar, showing the run's epoch count instead of one-epoch fit calls'."""

        def set_params(self, params):
            super().set_params(params)
            self.epochs = total_epochs

    return EpochProgbar()


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
    log.info("Training on %d curves (%d planet hosts), validating on %d; class weights %.2f (non-host) / %.2f (host)",
             runner.rows, int(data.labels("train").sum()), len(data.labels("val")), *runner.class_weights)
    first_batch = []

    def announce_first_batch(batch, logs=None):
        if not first_batch:
            first_batch.append(batch)
            log.info("First training batch of this run started")

    with InterruptGuard() as guard:
        checkpoint = make_checkpoint_callback(store, state, settings.paths.best_model_file, guard.critical)
        callbacks = [checkpoint, keras.callbacks.LambdaCallback(on_train_batch_begin=announce_first_batch)]
        interactive = sys.stdout.isatty()
        if interactive:
            callbacks.append(_progress_bar(total))
        try:
            for epoch in range(state.epoch, total):
                runner.run(model, epoch, callbacks, verbose=1 if interactive else 0)
                log.info(_epoch_line(state, total, checkpoint.improved))
                if _stopped_early(state, config):
                    log.info("Early stopping: no better val_auc in %d epochs (best %.4f at epoch %d)",
                             config.early_stopping_patience, state.best_value, state.best_epoch)
                    break
        except (Interrupted, KeyboardInterrupt) as interrupt:
            signum = getattr(interrupt, "signum", signal.SIGINT)
            saved = {0: "No epoch was completed yet", 1: "Epoch 1 is saved"}.get(
                state.epoch, f"Epochs 1-{state.epoch} are saved")
            raise Interrupted(signum, (
                f"Interrupted ({signal.Signals(signum).name}) during epoch {state.epoch + 1}. {saved} in "
                f"{settings.paths.checkpoint_dir}. Rerun the same command to resume from epoch {state.epoch + 1}."
            )) from None
    log.info("Training finished: %d epochs; best val_auc %.4f at epoch %d, saved as %s",
             state.epoch, state.best_value if state.best_value is not None else float("nan"),
             state.best_epoch, settings.paths.best_model_file)
    return state


def status_report(checkpoint_dir: Path, total_epochs: int) -> list[str]:
    """Lines describing training progress, read from the checkpoint without TensorFlow."""
    store = CheckpointStore(checkpoint_dir)
    state, lines = None, []
    for path in (store.model_file, store.previous_file):
        if path.exists():
            try:
                state = read_state_from_model_file(path)
                break
            except CheckpointDamaged as damage:
                lines.append(f"{path}: damaged ({damage})")
    if state is None:
        if store.model_file.exists() or store.previous_file.exists():
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

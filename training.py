"""Stages [5/7] and [6/7]: build (or restore) the model, then train it one epoch at a time.

This module prepares the model and runs stage 6; the epoch runner (``epochs.py``), the interrupt
guard (``interrupts.py``), the checkpoint store with its status and disk checks
(``checkpoint_callback.py``) and the memory helpers (``memory.py``) each have their own.

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
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import atomic_io
import fingerprints
from checkpoint_callback import (CheckpointError, CheckpointStore, TrainingState, check_disk_space,
                                 make_checkpoint_callback)
from epochs import EpochRunner
from errors import Interrupted, TrainerError
from interrupts import InterruptGuard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    # 60 (100 before 1.12) keeps a default run, whose epochs the spectrum branch makes about a
    # fifth longer, within 15 minutes on 2 cores; raising it extends a run (README, "Measured").
    epochs: int = 60
    batch_size: int = 32
    # Stop after this many epochs without a better val_auc (0: never). 12 keeps a default run
    # within 15 minutes on 2 cores (20 before 1.9: runs of up to 100 epochs;
    # docs/detector_levers.md).
    early_stopping_patience: int = 12
    random_views: bool = True           # each epoch, each training curve shifted circularly and reversed at random
    # Each epoch reads 1/epoch_parts of the training curves, the parts in turn (epochs.epoch_order).
    # None: BUILT_IN_EPOCH_PARTS on the built-in data, three times 1.14's curves at about the cost
    # an epoch (more stars, hosts and injections; docs/detector_levers.md), and 1 on files of your
    # own, whose epochs stay whole passes. Stage 1 resolves it (``resolved``).
    epoch_parts: int | None = None

    def __post_init__(self):
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        if int(self.early_stopping_patience) < 0:
            raise ValueError(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}")
        if self.epoch_parts is not None and int(self.epoch_parts) < 1:
            raise ValueError(f"epoch_parts must be a positive integer or null ({BUILT_IN_EPOCH_PARTS} on the built-in "
                             f"data, 1 on yours), got {self.epoch_parts}")

    def resolved(self, built_in: bool) -> TrainingConfig:
        """These settings with ``epoch_parts`` None replaced by its value for this run's data.

        >>> TrainingConfig().resolved(built_in=True).epoch_parts, TrainingConfig().resolved(built_in=False).epoch_parts
        (3, 1)
        """
        if self.epoch_parts is not None:
            return self
        return dataclasses.replace(self, epoch_parts=BUILT_IN_EPOCH_PARTS if built_in else 1)

    def fingerprint(self) -> dict:
        """The settings a checkpoint is only valid for. ``epochs`` is not one: raising it extends a run.

        A setting added since 1.4 is left out at the value that trains as 1.4 did, so a 1.4
        checkpoint resumes with it set so (``{"training": {"random_views": false}}``).
        """
        if self.epoch_parts is None:
            raise ValueError("epoch_parts is not resolved: call resolved() with the run's data first")
        return fingerprints.settings(self, _ADDED_SINCE_1_4, leave_out=("epochs",))


# The built-in data's parts: 15000 curves (``SyntheticConfig.rows``), each epoch a third.
BUILT_IN_EPOCH_PARTS = 3


# Settings added since 1.4, with the value that leaves training as it was before them.
_ADDED_SINCE_1_4 = {"random_views": False, "epoch_parts": 1}


def training_fingerprint(model_config, training_config: TrainingConfig, seed: int, data_fingerprint: dict) -> dict:
    """Settings a checkpoint is only valid for. ``epochs`` is not one: raising it extends a run."""
    # Through JSON, as the checkpoint stores it: tuples compare as the lists they come back as.
    return json.loads(json.dumps({"model": model_config.fingerprint(), "training": training_config.fingerprint(),
                                  "seed": seed, "data": fingerprints.digest(data_fingerprint)[:16]}))


def check_checkpoint(checkpoint_dir: Path, fingerprint: dict, fresh: bool, data_records: tuple = (None, None)) -> None:
    """Before anything is written: refuse now if stage 5 would refuse the checkpoint.

    ``fingerprint``: ``training_fingerprint`` of this run; with ``fresh`` nothing is checked.
    ``data_records``: the data fingerprints of the saved cache (None if unreadable) and of this
    run, so that a refusal names the data setting that changed, not only "data".

    Raises:
        CheckpointMismatch, CheckpointError: as ``CheckpointStore.restore``.
    """
    if not fresh:
        CheckpointStore(checkpoint_dir).check(fingerprint, digested={"data": data_records})


@dataclass
class PreparedModel:
    model: object
    state: TrainingState
    store: CheckpointStore
    resumed: bool


def prepare_model(data, model_config, training_config: TrainingConfig, seed: int, paths, fresh: bool,
                  strategy=None, restore_from: CheckpointStore | None = None, synchronise=None) -> PreparedModel:
    """Stage [5/7]: restore the model from the checkpoint, or build a new one.

    ``paths``: the checkpoint folder (restored from and saved to), the best model and the cache
    file are used; ``fresh`` removes the checkpoint set and the best model first.
    ``strategy``: a ``tf.distribute`` strategy whose scope holds the model's variables, or None.
    ``restore_from``: another store to restore from, read only (a multi-worker job's other
    workers read the chief's); saves still go to ``paths.checkpoint_dir``.
    ``synchronise``: called once between the checkpoint files and the model: after a writer's
    restore (with its repairs), before a ``restore_from`` reader looks at the files, so that in a
    multi-worker job the workers read what the chief left (nothing, after the chief's --fresh).

    Raises:
        CheckpointMismatch: the checkpoint was made with other model or training settings.
        CheckpointError: checkpoint files exist but none can be used.
    """
    from quiet_tensorflow import import_tensorflow

    import_tensorflow()
    import keras
    import tensorflow as tf

    from model import load_saved_model

    store = CheckpointStore(paths.checkpoint_dir)
    if fresh:
        removed = store.remove_all()
        if paths.best_model_file.exists() or paths.best_model_file.is_symlink():
            atomic_io.remove(paths.best_model_file)
            removed.append(paths.best_model_file)
        log.info("--fresh: removed %s", ", ".join(str(p) for p in removed) if removed else "nothing (no checkpoint)")
        log.info("  (the cached training data %s is kept; it is rebuilt whenever data or settings change)",
                 paths.cache_file)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    fingerprint = training_fingerprint(model_config, training_config, seed, data.fingerprint)
    if restore_from is None:
        restored = store.restore(fingerprint)
        if synchronise:
            synchronise()
    else:
        if synchronise:
            synchronise()
        restored = restore_from.restore(fingerprint, read_only=True)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    if restored is None:
        log.info("No checkpoint found - starting fresh training")
        with scope:
            model = _build(model_config, data)
        state = TrainingState(fingerprint=fingerprint)
        resumed = False
    else:
        path, state = restored
        log.info("=" * 60)
        log.info("CHECKPOINT FOUND - RESUMING TRAINING")
        log.info("  Last completed epoch: %d", state.epoch)
        if state.epoch < training_config.epochs and not _stopped_early(state, training_config):
            log.info("  Resuming from epoch %d...", state.epoch + 1)
        try:
            with scope:
                model = load_saved_model(path)
        except Exception as error:  # Keras raises many kinds; any of them means this file is unusable
            raise CheckpointError(
                f"{path} passes its checks but Keras cannot load it ({str(error).splitlines()[0][:120]}); "
                f"restore it from a backup, or start over with --fresh") from None
        log.info("  Model, optimizer state and history of %d epochs restored from %s", state.epoch, path)
        log.info("=" * 60)
        resumed = True
    model.summary(print_fn=lambda line, *args, **kwargs: log.info(line))
    return PreparedModel(model=model, state=state, store=store, resumed=resumed)


def _build(model_config, data):
    from model import build_model

    shape = data.inputs("train").shape
    try:
        return build_model(model_config, sequence_length=shape[1], channels=shape[2])
    except ValueError as error:
        raise TrainerError(f"model settings: {error}") from None


def _stopped_early(state: TrainingState, config: TrainingConfig) -> bool:
    patience = config.early_stopping_patience
    return patience > 0 and state.best_epoch > 0 and state.epoch - state.best_epoch >= patience


def _epoch_line(state: TrainingState, total: int, improved: bool) -> str:
    last = {name: values[-1] for name, values in state.history.items()}
    shown = " - ".join(f"{name} {last[name]:.4f}" for name in
                       ("loss", "auc", "pr_auc", "val_loss", "val_auc", "val_pr_auc", "val_precision", "val_recall")
                       if name in last)
    return (f"Epoch {state.epoch}/{total} - {shown} - {last.get('epoch_seconds', float('nan')):.1f}s - "
            f"checkpoint saved{' - new best model' if improved else ''}")


def train(prepared: PreparedModel, data, config: TrainingConfig, seed: int, checkpoint_dir: Path,
          best_model_file: Path, strategy=None) -> TrainingState:
    """Stage [6/7]: train from the epoch after the checkpoint's to ``config.epochs``.

    ``strategy``: the ``tf.distribute`` strategy the model was built under, or None;
    ``config.batch_size`` is then the global batch, split among its replicas.

    Raises:
        Interrupted: on Ctrl-C / SIGTERM (after the last completed epoch is safely saved).
        CheckpointError: if a checkpoint cannot be written.
        WorkerLost: another worker of a multi-worker job stopped.
    """
    from distribution import WorkerLost, is_multi_worker, lost_worker_errors, lost_worker_reason, replicas

    import keras

    model, state, store = prepared.model, prepared.state, prepared.store
    total = config.epochs
    if _stopped_early(state, config):
        log.info("Training already finished: stopped early at epoch %d (no better val_auc since epoch %d) "
                 "- going straight to evaluation", state.epoch, state.best_epoch)
        return state
    if state.epoch >= total:
        log.info("Training already finished: %d of %d epochs done - going straight to evaluation", state.epoch, total)
        return state
    check_disk_space(checkpoint_dir, model)
    if prepared.resumed:
        state.resumed_after.append(state.epoch)
    log.info("Starting from epoch: %d/%d", state.epoch + 1, total)

    runner = EpochRunner(data.inputs("train"), data.labels("train"), data.inputs("val"), data.labels("val"),
                         config.batch_size, seed, replicas(strategy), config.random_views, config.epoch_parts)
    if replicas(strategy) > 1:
        log.info("Distributed over %d replicas: global batch %d, %d steps per epoch", replicas(strategy),
                 config.batch_size, runner.steps_per_epoch)
    log.info("Training on %d curves (%d planet hosts), validating on %d; class weights %.2f (non-host) / %.2f (host)",
             runner.rows, int(data.labels("train").sum()), len(data.labels("val")), *runner.class_weights)
    if runner.parts > 1:
        log.info("Each epoch reads %d of them, one of %d parts in turn (training.epoch_parts)", runner.epoch_rows,
                 runner.parts)

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
        checkpoint = make_checkpoint_callback(store, state, best_model_file, guard.critical)
        interactive = sys.stdout.isatty()
        # Keras' progress bar, placed so it finishes its line before the epoch's log line.
        progress = [keras.callbacks.ProgbarLogger()] if interactive else []
        lost = lost_worker_errors() if is_multi_worker(strategy) else ()
        try:
            runner.fit(model, state.epoch, total, [guard.callback(), checkpoint, *progress, RunLog()],
                       verbose=1 if interactive else 0)
            guard.check()  # a signal after the last batch
        except lost as error:
            saved = f"epochs 1-{state.epoch} are saved" if state.epoch else "no epoch was completed"
            raise WorkerLost(
                f"another worker of the job stopped during epoch {state.epoch + 1} "
                f"({lost_worker_reason(error)}); {saved} by the chief in "
                f"its checkpoint folder. Rerun the same command on every machine to resume from epoch "
                f"{state.epoch + 1}") from None
        except (Interrupted, KeyboardInterrupt) as interrupt:
            signum = getattr(interrupt, "signum", signal.SIGINT)
            saved = {0: "No epoch was completed yet", 1: "Epoch 1 is saved"}.get(
                state.epoch, f"Epochs 1-{state.epoch} are saved")
            raise Interrupted(signum, (
                f"Interrupted ({signal.Signals(signum).name}) during epoch {state.epoch + 1}. {saved} in "
                f"{checkpoint_dir}. Rerun the same command to resume from epoch {state.epoch + 1}."
            )) from None
    del runner  # its input pipelines and their buffers
    gc.collect()
    log.info("Training finished: %d epochs; best val_auc %.4f at epoch %d, saved as %s",
             state.epoch, state.best_value if state.best_value is not None else float("nan"),
             state.best_epoch, best_model_file)
    if strategy is not None:
        # Every replica must end with the same weights; this line lets each worker's log show it.
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights()))
        log.info("Final weights SHA-256 %s", digest.hexdigest()[:16])
    return state

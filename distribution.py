"""Several devices and several machines: TensorFlow's own ``tf.distribute``, chosen by ``--distribute``.

    none           no strategy: the single-device path, bit-identical resume (the default)
    mirrored       ``tf.distribute.MirroredStrategy``: every visible GPU of this machine
    multi-worker   ``tf.distribute.MultiWorkerMirroredStrategy``: the machines that ``TF_CONFIG``
                   lists, each running the same command (TensorFlow's "multi-worker training
                   with Keras" layout: ``{"cluster": {"worker": ["host1:port", "host2:port"]},
                   "task": {"type": "worker", "index": 0}}``)

``--batch-size`` is the global batch: each of R replicas takes batch / R of its rows, and the
gradients are summed across replicas, so the (seed, epoch) batch order, the learning rate and
the batches themselves are those of a one-device run. Only the chief (task ``chief``, or worker
0 when the cluster has no chief, as TensorFlow decides) writes the checkpoint set, the best
model, results and the log; every other worker writes into a temporary folder that it deletes
(``worker_folder``), as Keras' ``BackupAndRestore`` does.

Keras 3 (3.15) does not run ``model.fit`` under ``MultiWorkerMirroredStrategy`` as shipped
(keras-team/keras#20585): to build the model it reduces the whole first batch across workers
(which fails on a structure of per-replica values), and it reduces the scalar logs of every
step along ``axis=0`` (which fails for scalars). ``_patch_keras``
replaces those two reductions with the ones TensorFlow documents for multi-worker values (a
local replica's batch to build from; ``strategy.reduce("MEAN", value, axis=None)`` for the
logs). ``GlobalValidationMetrics`` then reads the validation metrics' accumulators across all
replicas (Keras metric variables are ON_READ sums), so ``val_auc`` is that of the whole
validation split, identical on every worker, not a mean of each worker's share.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import atomic_io
import fingerprints
from errors import TrainerError

CHOICES = ("none", "mirrored", "multi-worker")


class DistributionError(TrainerError):
    """``--distribute`` cannot start: TF_CONFIG missing or malformed, no GPU, a peer unreachable."""


class WorkerLost(TrainerError):
    """Another worker of a multi-worker job stopped; the message says how to resume."""

    exit_code = 3


@dataclass(frozen=True)
class Task:
    """This process's place in the job."""

    kind: str = "none"        # one of CHOICES
    workers: int = 1          # processes in the cluster
    index: int = 0            # this process's position among them
    is_chief: bool = True     # writes the shared folders

    def describe(self) -> str:
        if self.kind != "multi-worker":
            return self.kind
        return f"multi-worker, task {self.index + 1} of {self.workers}" + (" (chief)" if self.is_chief else "")


def task_from_environment(kind: str, environ=os.environ) -> Task:
    """This process's ``Task`` from ``--distribute`` and, for multi-worker, ``TF_CONFIG``; no TensorFlow.

    Raises:
        DistributionError: TF_CONFIG missing, not JSON, or not naming this task in its cluster.
    """
    if kind not in CHOICES:
        raise DistributionError(f"--distribute {kind}: use one of {', '.join(CHOICES)}")
    if kind != "multi-worker":
        return Task(kind=kind)
    raw = environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise DistributionError(
            "--distribute multi-worker needs TF_CONFIG describing the cluster, e.g. "
            'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
            '"index": 0}}\' on the first machine (index 1 on the second); see README, "Scaling out"')
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        kind_of_task, index = str(task["type"]), int(task["index"])
        members = [(name, position) for name in ("chief", "worker") for position in range(len(cluster.get(name, [])))]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DistributionError(f"TF_CONFIG is not a cluster description TensorFlow can use ({error}); it needs "
                                '"cluster" (lists of host:port under "worker", optionally "chief") and "task" '
                                '({"type": "worker", "index": N})') from None
    if (kind_of_task, index) not in members:
        raise DistributionError(f"TF_CONFIG: task {kind_of_task} {index} is not in its cluster "
                                f"({', '.join(f'{n} {p}' for n, p in members) or 'empty'}); fix task.index")
    # TensorFlow's rule: the chief task if there is one, else worker 0.
    chief = ("chief", 0) if cluster.get("chief") else ("worker", 0)
    return Task(kind=kind, workers=len(members), index=members.index((kind_of_task, index)),
                is_chief=(kind_of_task, index) == chief)


def make_strategy(task: Task):
    """The ``tf.distribute`` strategy for ``task``, or None for ``none``.

    Must run before any other TensorFlow operation. For multi-worker it returns once every
    worker of TF_CONFIG has joined (TensorFlow's coordination service waits for them).

    Raises:
        DistributionError: ``mirrored`` without a GPU, or a cluster TensorFlow cannot start.
    """
    if task.kind == "none":
        return None
    from quiet_tensorflow import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    if task.kind == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            raise DistributionError("--distribute mirrored spreads training over this machine's GPUs, and "
                                    "TensorFlow sees none; train without --distribute, or check the GPU driver "
                                    "(python3 -c \"import tensorflow as tf; print(tf.config.list_physical_devices())\")")
        return tf.distribute.MirroredStrategy()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise DistributionError(f"--distribute multi-worker: TensorFlow could not start the cluster of TF_CONFIG "
                                f"({str(error).splitlines()[0][:160]}); check the host:port list and that every "
                                f"machine runs the same command") from None
    _patch_keras()
    return strategy


def replicas(strategy) -> int:
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def is_multi_worker(strategy) -> bool:
    if strategy is None:
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


WORKER_FOLDER_PREFIX = "hybrid_training_worker"


def worker_folder(task: Task) -> Path | None:
    """A temporary folder for a non-chief worker's writes (None for the chief); ``remove_worker_folder`` deletes it.

    A worker that was killed could not delete its folder; the next one removes every such
    folder whose run lock (``checkpoints/.lock``, dropped by the system when a process dies) is free.
    """
    if task.is_chief:
        return None
    for stale in Path(tempfile.gettempdir()).glob(f"{WORKER_FOLDER_PREFIX}*"):
        if atomic_io.abandoned(stale / "checkpoints"):  # not a running worker's, nor one being set up
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{WORKER_FOLDER_PREFIX}{task.index}_"))


def remove_worker_folder(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def lost_worker_errors():
    """The exceptions TensorFlow raises in a collective when another worker has gone."""
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.InternalError,
            tf.errors.DeadlineExceededError, tf.errors.AbortedError, tf.errors.UnknownError)


def global_validation_metrics_callback():
    """A Keras callback (put it first) that replaces each ``val_*`` log by its value over all replicas."""
    import keras

    class GlobalValidationMetrics(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            # In cross-replica context, reading a metric's ON_READ variables sums them over
            # every replica of every worker (a collective that all workers run here, in step).
            for metric in self.model.metrics:
                results = metric.result()
                results = results if isinstance(results, dict) else {metric.name: results}
                for name, value in results.items():
                    if f"val_{name}" in logs:
                        logs[f"val_{name}"] = float(value)

    return GlobalValidationMetrics()


_PATCHED = False


def _patch_keras() -> None:
    """Make Keras 3's ``fit`` work under MultiWorkerMirroredStrategy (keras-team/keras#20585)."""
    global _PATCHED
    if _PATCHED:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    multi_worker = trainer._collective_all_reduce_multi_worker
    reduce_per_replica = trainer.reduce_per_replica
    symbolic_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_scalars(values, strategy, reduction):
        # The step's logs are scalars: reduce across workers without an axis.
        if multi_worker(strategy) and reduction in ("auto", "mean"):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    def build_from_local_batch(self, iterator=None, data_batch=None):
        # The model only needs a batch's shapes to build: take this worker's first replica's.
        if iterator is not None and multi_worker(self.distribute_strategy):
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: self.distribute_strategy.experimental_local_results(value)[0], next(batches))
                break
            iterator = None
        return symbolic_build(self, iterator=iterator, data_batch=data_batch)

    trainer.reduce_per_replica = reduce_scalars
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_batch
    _PATCHED = True


def barrier(strategy) -> None:
    """Return once every worker has called it (a collective sum over all replicas); no-op without workers.

    Raises:
        WorkerLost: a worker stopped before reaching it.
    """
    if is_multi_worker(strategy):
        _sum_over_replicas(strategy, [1.0])


def lost_worker_reason(error) -> str:
    """TensorFlow's message without the collective op's name in front of it (the reason follows "aborted by:")."""
    return f"{type(error).__name__}: " + str(error).split("aborted by:")[-1].strip().splitlines()[0][:100]


def agree(strategy, value: bool, what: str) -> bool:
    """``value``, once every worker has reached this point with the same one (a barrier too).

    Raises:
        DistributionError: the workers differ (``what`` says in what).
        WorkerLost: a worker stopped before reaching it.
    """
    if is_multi_worker(strategy) and _differs_among_workers(strategy, [int(bool(value))])[0]:
        raise DistributionError(f"the workers differ on {what} (this one: {'yes' if value else 'no'}); every "
                                f"worker must read the same data and checkpoint folders: share them, and rerun")
    return value


def check_same_data(strategy, fingerprint: dict) -> None:
    """Raise unless every worker found the same data files and settings (the data fingerprint).

    Raises:
        DistributionError: the workers see different files or settings.
        WorkerLost: a worker stopped before reaching it.
    """
    if not is_multi_worker(strategy):
        return
    digest = fingerprints.digest(fingerprint)
    # Two 12-bit parts of its digest, each exact in float32 with its square.
    if _differs_among_workers(strategy, [int(digest[:3], 16), int(digest[3:6], 16)])[0]:
        raise DistributionError("the workers see different data files or settings (the data fingerprint differs); "
                                "every worker must read the same data folder and --config: share them, and rerun")


def check_same_epoch(strategy, epoch: int) -> None:
    """Raise unless every worker resumes at ``epoch``.

    Raises:
        DistributionError: the workers restored different epochs.
        WorkerLost: a worker stopped before reaching it.
    """
    if not is_multi_worker(strategy):
        return
    differs, (total,) = _differs_among_workers(strategy, [epoch])
    if differs:
        raise DistributionError(f"the workers restored different checkpoints (this one: epoch {epoch}, the mean: "
                                f"{total / replicas(strategy):g}); every worker must read the chief's checkpoint "
                                f"folder: share it, or give each the same --checkpoint-dir path")


def _differs_among_workers(strategy, numbers: list[int]) -> tuple[bool, list[float]]:
    """Whether ``numbers`` (integers below 4096) are not the same on every worker, and their sums over
    the replicas. The sums of a number and of its square over the replicas equal the count times
    this worker's only if every worker has the same (a collective, so a barrier too).

    Raises:
        WorkerLost: a worker stopped before reaching it.
    """
    mine = [1.0] + [value for number in numbers for value in (float(number), float(number) ** 2)]
    total = _sum_over_replicas(strategy, mine)
    differs = any(abs(got - total[0] * want) > 0.5 for got, want in zip(total[1:], mine[1:]))
    return differs, total[1::2]


def _sum_over_replicas(strategy, values: list[float]) -> list[float]:
    """``values`` summed over every replica of every worker: a collective, so also a barrier.

    Raises:
        WorkerLost: a worker stopped before reaching it.
    """
    import gc

    import tensorflow as tf

    try:
        total = strategy.reduce("SUM", strategy.run(lambda: tf.constant(values)), axis=None)
    except lost_worker_errors() as error:
        reason = lost_worker_reason(error)
    else:
        return [float(value) for value in total]
    # The failed eager all-reduce left TensorFlow's thread pool open (cross_device_ops.py maps
    # over a ThreadPool and closes it only on success); collected now, with the traceback that
    # held it, it closes quietly, where at exit it would print "Exception ignored in Pool.__del__".
    gc.collect()
    raise WorkerLost(f"another worker of the job stopped before training ({reason}); rerun the same command on "
                     f"every machine")


def localhost_tf_configs(workers: int) -> list[str]:
    """One TF_CONFIG per worker of a job on this machine, on free ports (tests, benchmarks, a first try)."""
    import socket

    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:
        s.bind(("localhost", 0))
    hosts = [f"localhost:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})
            for index in range(workers)]

"""The epoch runner: training whose batch order and dropout masks depend only on (seed, epoch).

Everything an epoch depends on that is not saved in the checkpoint is a pure function of
(seed, epoch) here: the batch order (``epoch_order``; with ``TrainingConfig.epoch_parts`` > 1,
also which part of the training curves the epoch reads), the view each training curve is read in
(``epoch_views``: shifted circularly and reversed in time at random, ``TrainingConfig.random_views``)
and the dropout seeds (``reset_random_state``). The whole run is one ``model.fit`` on one dataset that yields the
epochs' batches back to back (``EpochRunner``); see training.py for why that gives exact resume.
"""

from __future__ import annotations

import numpy as np

from errors import TrainerError
from memory import available_cores


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-class weights n / (2 * n_class) ("balanced"): each class contributes equally to the loss."""
    counts = np.bincount(labels.astype(np.int64), minlength=2).astype(np.float64)
    return labels.size / (2.0 * np.maximum(counts, 1.0))


def epoch_order(seed: int, epoch: int, rows: int, parts: int = 1) -> np.ndarray:
    """The rows one epoch reads, in batch order: a pure function of (seed, epoch), so a resumed
    run replays it.

    With ``parts`` > 1 an epoch reads ``rows // parts`` of the rows: epochs ``c * parts`` to
    ``c * parts + parts - 1`` read the parts of one permutation drawn from (seed, c) in turn, so
    each row is read at most once in those epochs (the ``rows % parts`` left over are a different
    few each time).

    >>> a, b, c = (epoch_order(1, epoch, 7, parts=2) for epoch in (0, 1, 2))
    >>> len(a), len(set(a) | set(b)), sorted(a) == sorted(c)
    (3, 6, False)
    """
    if parts == 1:
        return np.random.default_rng([seed, 4, epoch]).permutation(rows)
    cycle, part = divmod(epoch, parts)
    size = rows // parts
    return np.random.default_rng([seed, 13, cycle]).permutation(rows)[part * size:(part + 1) * size]


def epoch_views(seed: int, epoch: int, rows: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """How each training curve is read in one epoch: (circular shift in cadences, reversed in time),
    each [rows], a pure function of (seed, epoch), so a resumed run replays it."""
    rng = np.random.default_rng([seed, 12, epoch])
    return rng.integers(0, length, rows), rng.random(rows) < 0.5


def view_rows(x: np.ndarray, shift: np.ndarray, reverse: np.ndarray) -> np.ndarray:
    """Rows of ``x`` [rows, length, ...] shifted circularly by ``shift`` and then reversed where ``reverse``.

    >>> view_rows(np.arange(8.0).reshape(2, 4), np.array([1, 1]), np.array([False, True])).tolist()
    [[3.0, 0.0, 1.0, 2.0], [6.0, 5.0, 4.0, 7.0]]
    """
    length = x.shape[1]
    index = np.arange(length)[None, :]
    index = np.where(reverse[:, None], length - 1 - index, index)
    index = (index - shift[:, None]) % length
    return np.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def reset_random_state(model, seed: int, epoch: int) -> int:
    """Set every SeedGenerator state of the model (dropout) from (seed, epoch); returns how many."""
    generators = [v for v in model.variables if "seed_generator_state" in v.path]
    for number, variable in enumerate(generators):
        values = np.random.default_rng([seed, 5, epoch, number]).integers(0, 2**31 - 1, variable.shape)
        variable.assign(values.astype(variable.dtype))
    return len(generators)


def batch_bounds(rows: int, batch_size: int, replicas: int = 1) -> np.ndarray:
    """Start of each batch of an epoch, then ``rows``: batches of ``batch_size``, the last one
    joined to the one before when it has fewer rows than ``replicas`` (so none gets an empty share).

    >>> batch_bounds(10, 4).tolist(), batch_bounds(9, 4, replicas=2).tolist()
    ([0, 4, 8, 10], [0, 4, 9])
    """
    bounds = list(range(0, rows, batch_size)) + [rows]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < replicas:
        del bounds[-2]
    return np.asarray(bounds, dtype=np.int64)


def row_reader(source, row_shape: tuple):
    """A TensorFlow function giving the rows of ``source`` at an int tensor of row numbers, float32;
    given also tensors of each row's shift and reversal, the rows as ``view_rows`` makes them.

    ``source``: a ``row_store.RowFile`` (the cache's curves, read from disk by rows) or an array.
    Declared stateless: the rows read depend only on the row numbers (and views), so tf.data may
    run reads in parallel and prefetch under op determinism (a stateful op would run the whole
    pipeline serially).
    """
    import tensorflow as tf

    def read(rows, *view):
        values = np.asarray(source.take(rows, axis=0), dtype=np.float32)
        return view_rows(values, *view) if view else values

    def rows_of(index, *view):
        values = tf.numpy_function(read, [index, *view], tf.float32, stateful=False)
        values.set_shape((None,) + tuple(row_shape))
        return values

    return rows_of


class EpochRunner:
    """Training whose batch order, views and dropout masks depend only on (seed, epoch).

    The training and validation curves are read a batch at a time from ``x_train`` and
    ``x_val`` (the cache's files, or arrays), so memory does not grow with the data. With
    ``random_views`` each training curve is read in its view of the epoch (``epoch_views``): a
    fresh augmentation of every curve, hosts and non-hosts alike, at no cost of disk or memory;
    validation reads the curves as they are.
    With ``epoch_parts`` > 1 each epoch reads a part of the training curves (``epoch_order``).
    ``fit`` trains a range of epochs in one Keras fit call on a dataset built for exactly those
    epochs.
    """

    def __init__(self, x_train, y_train, x_val, y_val, batch_size: int, seed: int, replicas: int = 1,
                 random_views: bool = False, epoch_parts: int = 1):
        import tensorflow as tf

        self.rows, self.seed, self.replicas, self.random_views = len(y_train), seed, replicas, random_views
        self.parts, self.epoch_rows = epoch_parts, len(y_train) // epoch_parts
        if self.epoch_rows < 1:
            raise TrainerError(f"training.epoch_parts {epoch_parts} is more than the {self.rows} training curves; "
                               f"set it to at most {self.rows} in --config")
        self.length = x_train.shape[1]
        # Under a tf.distribute strategy each global batch is split among the replicas, and a
        # replica given no rows fails (TensorFlow's CPU convolution returns a wrong shape for an
        # empty batch): an epoch's last batch with fewer rows than replicas joins the one before.
        self.train_bounds = batch_bounds(self.epoch_rows, batch_size, replicas)
        self.val_bounds = batch_bounds(len(y_val), batch_size, replicas)
        self.steps_per_epoch = len(self.train_bounds) - 1
        self.class_weights = class_weights(y_train)
        self.train_rows = row_reader(x_train, x_train.shape[1:])
        self.targets = tf.constant(y_train.astype(np.float32)[:, None])
        self.sample_weights = tf.constant(self.class_weights[y_train.astype(np.int64)].astype(np.float32))
        self.val_rows = row_reader(x_val, x_val.shape[1:])
        self.val_targets = tf.constant(y_val.astype(np.float32)[:, None])
        # Fixed parallelism, no autotuning: the autotuner's thread sleeps for intervals that
        # grow to a minute, and tearing a pipeline down waits for it to wake (measured: 2 to
        # 39 s after early stopping, 0.7 s per epoch when each epoch had its own pipeline).
        self.options = tf.data.Options()
        self.options.autotune.enabled = False
        if replicas > 1:
            # Batches are made here, in (seed, epoch) order; the strategy splits each among the
            # replicas (rows, not files, hence DATA; AUTO would try files first, with a warning).
            self.options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        self.parallel_reads = available_cores()

    def validation(self):
        """The validation batches, in order, read from the validation curves."""
        import tensorflow as tf

        bounds = tf.constant(self.val_bounds)

        def take(batch):
            index = tf.range(bounds[batch], bounds[batch + 1])
            return self.val_rows(index), tf.gather(self.val_targets, index)

        return (tf.data.Dataset.range(len(self.val_bounds) - 1).map(take, num_parallel_calls=self.parallel_reads)
                .prefetch(2).with_options(self.options))

    def batches(self, first_epoch: int, last_epoch: int):
        """The batches of epochs ``first_epoch`` to ``last_epoch - 1`` (counted from 0), in order."""
        import tensorflow as tf

        def gather(rows, shift, reverse):
            curves = self.train_rows(rows, shift, reverse) if self.random_views else self.train_rows(rows)
            return curves, tf.gather(self.targets, rows), tf.gather(self.sample_weights, rows)

        def order_of(epoch):
            rows = epoch_order(self.seed, int(epoch), self.rows, self.parts)
            shift, reverse = epoch_views(self.seed, int(epoch), self.rows, self.length) if self.random_views else \
                (np.zeros(self.rows, np.int64), np.zeros(self.rows, bool))
            return rows.astype(np.int32), shift[rows].astype(np.int32), reverse[rows]

        def order(epoch):
            # Each epoch's order (and views) when the pipeline reaches it (9 bytes per curve), from
            # (seed, epoch) alone, so declared stateless: under op determinism a stateful op would
            # make tf.data run the whole pipeline serially, without prefetching.
            made = tf.numpy_function(order_of, [epoch], (tf.int32, tf.int32, tf.bool), stateful=False)
            for part in made:
                part.set_shape((self.epoch_rows,))
            return made

        # Each epoch is batched on its own, so its last, short batch never mixes with the next
        # epoch's rows. The parallel reads keep their order (tf.data is deterministic by default).
        bounds = tf.constant(self.train_bounds)
        return (tf.data.Dataset.range(first_epoch, last_epoch).map(order)
                .flat_map(lambda rows, shift, reverse: tf.data.Dataset.range(self.steps_per_epoch).map(
                    lambda step: (rows[bounds[step]:bounds[step + 1]], shift[bounds[step]:bounds[step + 1]],
                                  reverse[bounds[step]:bounds[step + 1]])))
                .map(gather, num_parallel_calls=self.parallel_reads).prefetch(2).with_options(self.options))

    def fit(self, model, first_epoch: int, last_epoch: int, callbacks: list, verbose: int = 0):
        """Train epochs ``first_epoch + 1`` to ``last_epoch`` (counted from 1), validating after each.

        Returns the Keras History. A callback that sets ``model.stop_training`` ends it early.
        """
        import keras

        seed = self.seed

        class ResetRandomState(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                reset_random_state(self.model, seed, epoch)

        first = [ResetRandomState()]
        if getattr(model.optimizer, "use_ema", False):
            first.append(keras.callbacks.SwapEMAWeights())  # validate the averaged weights
        if self.replicas > 1:
            from distribution import global_validation_metrics_callback

            first.append(global_validation_metrics_callback())
        return model.fit(self.batches(first_epoch, last_epoch), steps_per_epoch=self.steps_per_epoch,
                         validation_data=self.validation(), initial_epoch=first_epoch, epochs=last_epoch,
                         callbacks=[*first, *callbacks], verbose=verbose, shuffle=False)

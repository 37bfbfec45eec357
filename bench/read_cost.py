#!/usr/bin/env python3
"""What reading batches from disk costs the training loop: epochs.EpochRunner on the same arrays,
once gathering rows from an in-memory tensor (the code before the cache was read by rows) and
once reading them from a .npy file by rows (``row_store.RowFile``, as the trainer does).

Same model, seed and batches; alternating; epochs after the first (tracing); medians.

    python3 bench/read_cost.py                 # 6000 curves, 2 repetitions of 3 epochs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from common import epoch_clock, train_and_validation


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from epochs import EpochRunner
    from model import ModelConfig, build_model
    from row_store import RowFile

    tf.config.experimental.enable_op_determinism()
    x, y, x_val, y_val = train_and_validation(args.rows)

    def in_memory(runner):
        train, val = tf.constant(x), tf.constant(x_val)
        runner.train_rows = lambda rows: tf.gather(train, rows)
        runner.val_rows = lambda index: tf.gather(val, index)
        return runner

    seconds = {"in-memory tensor": [], ".npy file by rows": []}
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "x.npy", x)
        np.save(Path(folder) / "x_val.npy", x_val)
        for _ in range(args.repeats):
            for name in seconds:
                keras.utils.set_random_seed(1)
                model, clock = build_model(ModelConfig(), x.shape[1], channels=x.shape[2]), epoch_clock()
                if name == "in-memory tensor":
                    runner = in_memory(EpochRunner(x, y, x_val, y_val, 32, 1))
                else:
                    runner = EpochRunner(RowFile.open_npy(Path(folder) / "x.npy"), y,
                                         RowFile.open_npy(Path(folder) / "x_val.npy"), y_val, 32, 1)
                runner.fit(model, 0, args.epochs, [clock])
                seconds[name] += clock.seconds[1:]
    for name, values in seconds.items():
        print(f"{name:24} median epoch {np.median(values):.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()

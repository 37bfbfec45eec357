#!/usr/bin/env python3
"""Training throughput: the trainer's training loop against a plain model.fit on the same arrays.

Same model, same seed, same preprocessed arrays: (a) epochs.EpochRunner as the trainer runs
it, reading the curves by rows from their .npy files as it reads its cache (each in its random
view of the epoch, as the default trains), with TensorFlow's op determinism on, one fit call whose dataset gives each epoch the
(seed, epoch) batch order and a callback that resets the dropout seeds each epoch (everything
exact resume needs except the checkpoint, which bench/checkpoint_overhead.py measures);
(b) ``model.fit(x, y, batch_size=32, shuffle=True, epochs=N)`` with the same class weights and
op determinism off (TensorFlow cannot switch it off again once on, so every run is a fresh
process on the same saved arrays). Samples per second from each epoch's wall time (start to
next start) over the epochs after the first (tracing); medians; the variants alternate within
each repetition.

    python3 bench/training_throughput.py                 # 22,668 training curves
    python3 bench/training_throughput.py --rows 2000     # quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import epoch_clock, machine, train_and_validation, write_result


def ours(x, y, x_val, y_val, epochs):
    import keras
    import tensorflow as tf

    from model import ModelConfig, build_model
    from epochs import EpochRunner
    from training import TrainingConfig

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(), x.shape[1], channels=x.shape[2])
    clock = epoch_clock()
    EpochRunner(x, y, x_val, y_val, batch_size=32, seed=1,
                random_views=TrainingConfig().random_views).fit(model, 0, epochs, [clock])
    return clock.seconds[1:]


def plain(x, y, x_val, y_val, epochs):
    import keras

    from model import ModelConfig, build_model
    from epochs import class_weights

    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(), x.shape[1], channels=x.shape[2])
    weights = class_weights(y)
    clock = epoch_clock()
    model.fit(x, y.astype(np.float32), batch_size=32, shuffle=True, epochs=epochs, verbose=0,
              class_weight={0: weights[0], 1: weights[1]}, validation_data=(x_val, y_val.astype(np.float32)),
              callbacks=[clock])
    return clock.seconds[1:]


def child(variant: str, arrays: Path, epochs: int) -> None:
    """Run one variant on the saved arrays; print its epoch seconds as JSON.

    The trainer's loop reads the curves from their .npy files by rows, as it reads its cache;
    the plain script loads them into memory.
    """
    from row_store import RowFile

    y, y_val = (np.load(arrays / f"{k}.npy", allow_pickle=False) for k in ("y", "y_val"))
    if variant == "ours":
        x, x_val = (RowFile.open_npy(arrays / f"{k}.npy") for k in ("x", "x_val"))
    else:
        x, x_val = (np.load(arrays / f"{k}.npy", allow_pickle=False) for k in ("x", "x_val"))
    print(json.dumps((ours if variant == "ours" else plain)(x, y, x_val, y_val, epochs)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=22668, help="training curves (default: the seed's 22,668)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run, the first is not counted")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=("ours", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--arrays", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.arrays, args.epochs)
        return

    times = {"ours": [], "plain": []}
    with tempfile.TemporaryDirectory() as folder:
        arrays = Path(folder)
        for name, array in zip(("x", "y", "x_val", "y_val"), train_and_validation(args.rows)):
            np.save(arrays / f"{name}.npy", array)
        for repeat in range(args.repeats):
            for variant in ("ours", "plain") if repeat % 2 == 0 else ("plain", "ours"):
                completed = subprocess.run([sys.executable, __file__, "--child", variant, "--arrays", str(arrays),
                                            "--epochs", str(args.epochs)], capture_output=True, text=True)
                if completed.returncode != 0:
                    raise SystemExit(f"{variant} run failed:\n{completed.stderr[-2000:]}")
                times[variant] += json.loads(completed.stdout.strip().splitlines()[-1])
    rate = {k: args.rows / float(np.median(v)) for k, v in times.items()}
    result = {"rows": args.rows, "epochs_per_run": args.epochs, "repeats": args.repeats,
              "epoch_seconds": times, "samples_per_second": rate, "ratio_ours_to_plain": rate["ours"] / rate["plain"],
              "machine": machine()}
    print(f"{'':50}{'samples/s (median)':>20}")
    print(f"{'trainer training loop (exact-resume machinery)':50}{rate['ours']:20.0f}")
    print(f"{'plain model.fit(shuffle=True)':50}{rate['plain']:20.0f}")
    print(f"ratio {result['ratio_ours_to_plain']:.3f}; {args.rows} curves, {len(times['ours'])} epochs each; "
          f"{result['machine']}")
    print(f"written to {write_result('training_throughput', result)}")


if __name__ == "__main__":
    main()

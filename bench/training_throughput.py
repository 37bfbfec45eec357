#!/usr/bin/env python3
"""Training throughput: the trainer's epoch loop against a plain model.fit on the same arrays.

Same model, same seed, same preprocessed arrays: (a) training.EpochRunner, one fit call per
epoch with the (seed, epoch) batch order and random-state reset that exact resume needs, no
checkpoint callback; (b) ``model.fit(x, y, batch_size=32, shuffle=True, epochs=N)`` with the
same class weights. Samples per second over the epochs after the first (tracing), medians,
alternating repetitions.

    python3 bench/training_throughput.py                 # 22,668 training curves
    python3 bench/training_throughput.py --rows 2000     # quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import machine, train_and_validation, write_result


def ours(x, y, x_val, y_val, epochs):
    import keras

    from model import ModelConfig, build_model
    from training import EpochRunner

    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(), x.shape[1])
    runner = EpochRunner(x, y, x_val, y_val, batch_size=32, seed=1)
    seconds = []
    for epoch in range(epochs):
        started = time.perf_counter()
        runner.run(model, epoch, [])
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def plain(x, y, x_val, y_val, epochs):
    import keras

    from model import ModelConfig, build_model
    from training import class_weights

    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(), x.shape[1])
    weights = class_weights(y)
    seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(x, y.astype(np.float32), batch_size=32, shuffle=True, epochs=epochs, verbose=0,
              class_weight={0: weights[0], 1: weights[1]}, validation_data=(x_val, y_val.astype(np.float32)),
              callbacks=[Timer()])
    return seconds[1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=22668, help="training curves (default: the seed's 22,668)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run, the first is not counted")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    x_train, y_train, x_val, y_val = train_and_validation(args.rows)
    times = {"ours": [], "plain": []}
    for repeat in range(args.repeats):
        for variant in ("ours", "plain") if repeat % 2 == 0 else ("plain", "ours"):
            run = ours if variant == "ours" else plain
            times[variant] += run(x_train, y_train, x_val, y_val, args.epochs)
    rate = {k: args.rows / float(np.median(v)) for k, v in times.items()}
    result = {"rows": args.rows, "epochs_per_run": args.epochs, "repeats": args.repeats,
              "epoch_seconds": times, "samples_per_second": rate, "ratio_ours_to_plain": rate["ours"] / rate["plain"],
              "machine": machine()}
    print(f"{'':44}{'samples/s (median)':>20}")
    print(f"{'trainer epoch loop (exact-resume machinery)':44}{rate['ours']:20.0f}")
    print(f"{'plain model.fit(shuffle=True)':44}{rate['plain']:20.0f}")
    print(f"ratio {result['ratio_ours_to_plain']:.3f}; {args.rows} curves, {len(times['ours'])} epochs each; "
          f"{result['machine']}")
    print(f"written to {write_result('training_throughput', result)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Training throughput: the trainer's training loop against a plain model.fit on the same arrays.

Same model, same seed, same preprocessed arrays: (a) training.EpochRunner as the trainer runs
it, with TensorFlow's op determinism on, one fit call whose dataset gives each epoch the
(seed, epoch) batch order and a callback that resets the dropout seeds each epoch (everything
exact resume needs except the checkpoint, which bench/checkpoint_overhead.py measures);
(b) ``model.fit(x, y, batch_size=32, shuffle=True, epochs=N)`` with the same class weights and
op determinism off. Samples per second from each epoch's wall time (start to next start) over
the epochs after the first (tracing); medians; the variants alternate within each repetition.

    python3 bench/training_throughput.py                 # 22,668 training curves
    python3 bench/training_throughput.py --rows 2000     # quick
"""

from __future__ import annotations

import argparse

import numpy as np

from common import epoch_clock, machine, train_and_validation, write_result


def ours(x, y, x_val, y_val, epochs):
    import keras
    import tensorflow as tf

    from model import ModelConfig, build_model
    from training import EpochRunner

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(), x.shape[1])
    clock = epoch_clock()
    EpochRunner(x, y, x_val, y_val, batch_size=32, seed=1).fit(model, 0, epochs, [clock])
    return clock.seconds[1:]


def plain(x, y, x_val, y_val, epochs):
    import keras
    import tensorflow as tf

    from model import ModelConfig, build_model
    from training import class_weights

    tf.config.experimental.disable_op_determinism()
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(), x.shape[1])
    weights = class_weights(y)
    clock = epoch_clock()
    model.fit(x, y.astype(np.float32), batch_size=32, shuffle=True, epochs=epochs, verbose=0,
              class_weight={0: weights[0], 1: weights[1]}, validation_data=(x_val, y_val.astype(np.float32)),
              callbacks=[clock])
    return clock.seconds[1:]


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
    print(f"{'':50}{'samples/s (median)':>20}")
    print(f"{'trainer training loop (exact-resume machinery)':50}{rate['ours']:20.0f}")
    print(f"{'plain model.fit(shuffle=True)':50}{rate['plain']:20.0f}")
    print(f"ratio {result['ratio_ours_to_plain']:.3f}; {args.rows} curves, {len(times['ours'])} epochs each; "
          f"{result['machine']}")
    print(f"written to {write_result('training_throughput', result)}")


if __name__ == "__main__":
    main()

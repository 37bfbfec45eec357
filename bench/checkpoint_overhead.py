#!/usr/bin/env python3
"""Checkpoint overhead: the same training epochs with and without the checkpoint callback.

Two figures: the ratio of the median epoch times (side by side, alternating, so slow and fast
spells of the machine hit both; still noisy at the 1 % level), and the time the callback itself
spends saving, timed inside it, as a share of the median plain epoch (precise).

Both variants run the trainer's own training loop (epochs.EpochRunner) on the same data, with
the same model and seed, alternating within each repetition; the callback variant writes the full
checkpoint set every epoch and the best model every time validation AUC improves. The first epoch
of each run (tracing) is left out. Reports the median epoch time of each and their ratio.

    python3 bench/checkpoint_overhead.py                 # 22,668 training curves (the seed's scale)
    python3 bench/checkpoint_overhead.py --rows 2000     # quick
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from common import epoch_clock, machine, train_and_validation, write_result


def run_epochs(x, y, x_val, y_val, epochs: int, with_checkpoints: bool, workdir: Path):
    import keras

    from checkpoint_callback import CheckpointStore, TrainingState, make_checkpoint_callback
    from model import ModelConfig, build_model
    from epochs import EpochRunner

    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(), x.shape[1], channels=x.shape[2])
    runner = EpochRunner(x, y, x_val, y_val, batch_size=32, seed=1)
    callbacks = []
    if with_checkpoints:
        store = CheckpointStore(workdir / "checkpoints")
        store.remove_all()
        callbacks.append(make_checkpoint_callback(store, TrainingState(), workdir / "models" / "best.keras"))
    clock = epoch_clock()
    runner.fit(model, 0, epochs, [*callbacks, clock])
    return clock.seconds[1:], (callbacks[0].save_seconds[1:] if callbacks else [])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=22668, help="training curves (default: the seed's 22,668)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run, the first is not counted")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    x_train, y_train, x_val, y_val = train_and_validation(args.rows)
    times = {"without": [], "with": []}
    saves = []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for variant in ("without", "with") if repeat % 2 == 0 else ("with", "without"):
                epochs, saved = run_epochs(x_train, y_train, x_val, y_val, args.epochs, variant == "with", Path(folder))
                times[variant] += epochs
                saves += saved
    without, with_, save = (float(np.median(times["without"])), float(np.median(times["with"])),
                            float(np.median(saves)))
    result = {"rows": args.rows, "epochs_per_run": args.epochs, "repeats": args.repeats,
              "epoch_seconds_without": times["without"], "epoch_seconds_with": times["with"], "save_seconds": saves,
              "median_epoch_seconds_without": without, "median_epoch_seconds_with": with_,
              "ratio": with_ / without, "median_save_seconds": save,
              "save_percent_of_epoch": 100 * save / without, "machine": machine()}
    print(f"{'':36}{'median (s)':>12}")
    print(f"{'epoch, plain epoch loop':36}{without:12.3f}")
    print(f"{'epoch, with checkpoint callback':36}{with_:12.3f}")
    print(f"{'checkpoint save inside the epoch':36}{save:12.3f}")
    print(f"ratio of medians {result['ratio']:.4f}; the save itself is {result['save_percent_of_epoch']:.2f} % of an "
          f"epoch; {args.rows} training curves, {len(times['with'])} epochs each; {result['machine']}")
    print(f"written to {write_result('checkpoint_overhead', result)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Peak memory (RSS) of a full run at the seed's scale, against a plain Keras script.

Writes the built-in data set (default 32,383 curves: a 70 % training split of 22,668 curves, the
seed's scale), runs ``hybrid_training.py --epochs 2`` on it in a child process (all seven
stages), and reads the child's peak resident set size (the kernel's high-water mark, VmHWM,
read every 50 ms; rusage's ru_maxrss would also count the parent's memory at the fork), with
the peak of each stage from the same samples. The baseline, run the same
way: a plain Keras script that loads the same preprocessed arrays from the trainer's cache and
calls ``model.fit(x, y, batch_size=32, shuffle=True)`` then ``model.predict`` on the test split:
the least a script training this model on these arrays needs. Medians of the repetitions.

    python3 bench/peak_memory.py
    python3 bench/peak_memory.py --rows 3000 --repeats 1     # quick
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import machine, trainer_command, write_result

STAGE = re.compile(r"^\[(\d)/7\] (.+)$")


def child_peak(command: list[str]) -> tuple[int, dict[str, int]]:
    """(peak RSS in bytes, peak RSS of each announced stage) of one child process.

    Both from the child's /proc status sampled every 50 ms: VmHWM, the kernel's high-water mark
    of its resident memory since its exec, and VmRSS, split at the "[n/7] ..." lines it prints.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    stage, stages, peak, done = ["start-up"], {}, [0], threading.Event()

    def sample():
        while not done.is_set():
            try:
                with open(f"/proc/{process.pid}/status") as handle:
                    fields = dict(line.split(":", 1) for line in handle if line.startswith(("VmHWM", "VmRSS")))
                resident = int(fields["VmRSS"].split()[0]) * 1024
                peak[0] = max(peak[0], int(fields["VmHWM"].split()[0]) * 1024)
                stages[stage[0]] = max(stages.get(stage[0], 0), resident)
            except (OSError, ValueError, KeyError):
                pass  # not started yet, or gone
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = []
    for line in process.stdout:
        output.append(line)
        match = STAGE.match(line.strip())
        if match:
            stage[0] = f"[{match.group(1)}/7] {match.group(2)}"
    process.wait()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{command[1]} failed ({process.returncode}):\n{''.join(output)[-2000:]}")
    return max(peak[0], *stages.values()), stages


def plain_child(cache: Path, epochs: int) -> None:
    """The baseline: a plain Keras script on the trainer's cached arrays."""
    import keras

    from model import ModelConfig, build_model
    from epochs import class_weights

    with np.load(cache, allow_pickle=False) as arrays:
        x, y = arrays["X_train"], arrays["y_train"].astype(np.float32)
        x_val, y_val, x_test = arrays["X_val"], arrays["y_val"].astype(np.float32), arrays["X_test"]
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(), x.shape[1])
    weights = class_weights(y)
    model.fit(x, y, batch_size=32, shuffle=True, epochs=epochs, verbose=0, validation_data=(x_val, y_val),
              class_weight={0: weights[0], 1: weights[1]})
    model.predict(x_test, batch_size=256, verbose=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32383)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        plain_child(args.plain_child, args.epochs)
        return

    from synthetic_data import SyntheticConfig, write_synthetic_dataset

    ours, plain, stages = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder)
        write_synthetic_dataset(run / "data", SyntheticConfig(rows=args.rows, files=16 if args.rows >= 1600 else 1),
                                seed=1)
        for repeat in range(args.repeats):
            for variant in ("ours", "plain") if repeat % 2 == 0 else ("plain", "ours"):
                if variant == "ours":
                    for leftover in ("checkpoints", "models", "results"):
                        subprocess.run(["rm", "-rf", str(run / leftover)], check=True)
                    peak, per_stage = child_peak(trainer_command(run, run / "data", "--epochs", str(args.epochs)))
                    ours.append(peak)
                    stages.append(per_stage)
                else:
                    cache = run / "checkpoints" / "training_data.npz"
                    if not cache.exists():  # the plain script needs the trainer's cache first
                        child_peak(trainer_command(run, run / "data", "--epochs", "1"))
                    peak, _ = child_peak([sys.executable, __file__, "--plain-child", str(cache),
                                          "--epochs", str(args.epochs)])
                    plain.append(peak)
        with np.load(run / "checkpoints" / "training_data.npz", allow_pickle=False) as cache:
            train_rows = int(cache["X_train"].shape[0])
            train_bytes = cache["X_train"].nbytes
    stage_names = [name for name in stages[0] if name.startswith("[")]
    stage_peaks = {name: float(np.median([s.get(name, 0) for s in stages])) / 1e9 for name in stage_names}
    result = {"rows": args.rows, "training_rows_with_augmentation": train_rows, "epochs": args.epochs,
              "repeats": args.repeats, "peak_rss_gb": float(np.median(ours)) / 1e9,
              "plain_keras_peak_rss_gb": float(np.median(plain)) / 1e9, "ratio": float(np.median(ours) / np.median(plain)),
              "peak_rss_gb_runs": [p / 1e9 for p in ours], "plain_peak_rss_gb_runs": [p / 1e9 for p in plain],
              "stage_peak_rss_gb": stage_peaks, "training_array_gb": train_bytes / 1e9, "machine": machine()}
    print(f"{'peak resident memory (median)':44}{'GB':>8}")
    print(f"{'whole run of hybrid_training.py':44}{result['peak_rss_gb']:8.2f}")
    print(f"{'plain Keras script, same arrays':44}{result['plain_keras_peak_rss_gb']:8.2f}")
    for name, value in stage_peaks.items():
        print(f"{'  ' + name:44}{value:8.2f}")
    print(f"{'  (preprocessed training split, float32)':44}{result['training_array_gb']:8.2f}")
    print(f"ratio {result['ratio']:.2f}; {args.rows} curves ({train_rows} training rows), {args.epochs} epochs, "
          f"{args.repeats} repeats; {result['machine']}")
    print(f"written to {write_result('peak_memory', result)}")


if __name__ == "__main__":
    main()

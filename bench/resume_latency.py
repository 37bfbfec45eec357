#!/usr/bin/env python3
"""Resume latency: process start to first training batch, resuming vs a cold start.

Makes a data folder of built-in curves, runs the trainer once for one epoch (cold start: parse
the CSVs, preprocess, build the model), then reruns it with one more epoch (resume: cached data,
model restored from the checkpoint). Each process is timed from launch to the line "First
training batch of this run started" on its output. Repeated, medians reported.

    python3 bench/resume_latency.py               # 32,000 curves (the seed's 629 MB scale)
    python3 bench/resume_latency.py --rows 2000   # quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, trainer_command, write_result

MARKER = "First training batch of this run started"


def seconds_to_first_batch(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    elapsed = None
    for line in process.stdout:
        if elapsed is None and MARKER in line:
            elapsed = time.perf_counter() - started
    if process.wait() != 0 or elapsed is None:
        raise RuntimeError(f"trainer failed ({process.returncode}) in {cwd}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32000, help="curves in the data folder (default 32,000)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from synthetic_data import SyntheticConfig, write_synthetic_dataset

    cold, warm = [], []
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        write_synthetic_dataset(data, SyntheticConfig(rows=args.rows, files=16 if args.rows >= 1600 else 1), seed=1)
        for repeat in range(args.repeats):
            run = Path(folder) / f"run{repeat}"
            run.mkdir()
            cold.append(seconds_to_first_batch(trainer_command(run, data, "--epochs", "1"), run))
            warm.append(seconds_to_first_batch(trainer_command(run, data, "--epochs", "2"), run))
            shutil.rmtree(run)
    result = {"rows": args.rows, "repeats": args.repeats, "cold_start_seconds": cold, "resume_seconds": warm,
              "median_cold_start_seconds": float(np.median(cold)), "median_resume_seconds": float(np.median(warm)),
              "ratio_resume_to_cold": float(np.median(warm) / np.median(cold)), "machine": machine()}
    print(f"{'process start -> first training batch':40}{'median (s)':>12}")
    print(f"{'cold start (CSV, preprocess, build)':40}{result['median_cold_start_seconds']:12.2f}")
    print(f"{'resume (cache, checkpoint)':40}{result['median_resume_seconds']:12.2f}")
    print(f"ratio {result['ratio_resume_to_cold']:.3f}; {args.rows} curves, {args.repeats} repeats; {result['machine']}")
    print(f"written to {write_result('resume_latency', result)}")


if __name__ == "__main__":
    main()

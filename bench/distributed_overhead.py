#!/usr/bin/env python3
"""The cost of tf.distribute's engine: a 2-worker job on one machine against 1 worker, side by side.

Trains the same data set (built-in generator, default model) three ways, one after another in
this script, with the trainer's own command line:
    plain      python3 hybrid_training.py                                (no strategy)
    1 worker   ... --distribute multi-worker, TF_CONFIG with one worker
    2 workers  ... --distribute multi-worker, TF_CONFIG with two workers on localhost

and reports training samples per second (training curves / median epoch time, from each run's
checkpoints/history.npz; the first epoch, which traces the graphs, is left out). On one 2-core
machine the two workers share the cores, so this measures the engine's overhead (gradient
all-reduce over gRPC, per-worker input pipelines), not a speed-up; on two machines each worker
has its own cores.

    python3 bench/distributed_overhead.py                 # 2000 curves, 4 epochs, median of 3
    python3 bench/distributed_overhead.py --rows 500 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, machine, trainer_command, whole_epochs, write_result
from distribution import localhost_tf_configs


def run(kind: str, data: Path, config: Path, epochs: int) -> float:
    """Training samples per second of one run of ``kind`` (plain, 1 worker, 2 workers)."""
    with tempfile.TemporaryDirectory() as folder:
        workers = {"plain": 0, "1 worker": 1, "2 workers": 2}[kind]
        args = ["--config", str(config), "--epochs", str(epochs)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        processes = []
        if workers == 0:
            processes.append(subprocess.Popen(trainer_command(Path(folder), data, *args), env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        else:
            for tf_config in localhost_tf_configs(workers):
                processes.append(subprocess.Popen(
                    trainer_command(Path(folder), data, *args, "--distribute", "multi-worker"),
                    env=env | {"TF_CONFIG": tf_config}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = [process.communicate()[0] for process in processes]
        if any(process.returncode for process in processes):
            raise SystemExit(f"{kind} failed:\n" + "\n".join(out[-2000:] for out in outputs))
        with np.load(Path(folder) / "checkpoints" / "history.npz", allow_pickle=False) as history:
            seconds = history["epoch_seconds"][1:]
        line = next(line for line in outputs[0].splitlines() if line.startswith("Training on "))
        rows = int(line.split()[2])
        return rows / float(np.median(seconds))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="built-in curves (a 70/15/15 split)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from synthetic_data import SyntheticConfig, write_synthetic_dataset

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        write_synthetic_dataset(data, SyntheticConfig(rows=args.rows, completeness_rows=0), seed=42)
        config = Path(folder) / "config.json"
        config.write_text(json.dumps(whole_epochs({"synthetic": {"rows": args.rows, "completeness_rows": 0},
                                                   "training": {"early_stopping_patience": 0}})))
        speeds = {"plain": [], "1 worker": [], "2 workers": []}
        for repeat in range(args.repeats):
            for kind in speeds:  # interleaved, so drifts of the machine hit every kind alike
                speeds[kind].append(run(kind, data, config, args.epochs))
                print(f"repeat {repeat + 1}: {kind:10} {speeds[kind][-1]:8.1f} samples/s", flush=True)
    medians = {kind: statistics.median(values) for kind, values in speeds.items()}
    result = {"rows": args.rows, "epochs": args.epochs, "repeats": args.repeats,
              "samples_per_second": medians, "all": speeds,
              "two_workers_over_one": medians["2 workers"] / medians["1 worker"],
              "one_worker_over_plain": medians["1 worker"] / medians["plain"], "machine": machine()}
    for kind, value in medians.items():
        print(f"{kind:10} {value:8.1f} samples/s (median of {args.repeats})")
    print(f"2 workers / 1 worker: {result['two_workers_over_one']:.2f}x; 1 worker / plain: "
          f"{result['one_worker_over_plain']:.2f}x")
    print(f"written to {write_result('distributed_overhead', result).relative_to(ROOT)}")


if __name__ == "__main__":
    main()

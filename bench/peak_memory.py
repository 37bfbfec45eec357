#!/usr/bin/env python3
"""Peak memory (RSS) of a full run at the seed's scale, against the size of its training arrays.

Writes the built-in data set (default 32,383 curves: a 70 % training split of 22,668 curves, the
seed's scale), runs ``hybrid_training.py --epochs 2`` on it in a child process (all seven
stages) and reads the child's peak resident set size. The baseline is the float32 size of the
preprocessed training split: the least any trainer holding it in memory needs.

    python3 bench/peak_memory.py
    python3 bench/peak_memory.py --rows 3000     # quick
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
from pathlib import Path

from common import machine, trainer_command, write_result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32383)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    from synthetic_data import SyntheticConfig, write_synthetic_dataset

    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder)
        write_synthetic_dataset(run / "data", SyntheticConfig(rows=args.rows, files=16 if args.rows >= 1600 else 1),
                                seed=1)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        completed = subprocess.run(trainer_command(run, run / "data", "--epochs", str(args.epochs)),
                                   capture_output=True, text=True)
        if completed.returncode != 0:
            raise SystemExit(f"trainer failed:\n{completed.stdout[-2000:]}")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if peak_kb <= before:
            raise SystemExit("could not read the child's peak memory")
        import numpy as np

        with np.load(run / "checkpoints" / "training_data.npz", allow_pickle=False) as cache:
            train_bytes = cache["X_train"].nbytes
            train_rows = int(cache["X_train"].shape[0])
    result = {"rows": args.rows, "training_rows_with_augmentation": train_rows, "epochs": args.epochs,
              "peak_rss_gb": peak_kb * 1024 / 1e9, "training_array_gb": train_bytes / 1e9,
              "ratio_peak_to_training_array": peak_kb * 1024 / train_bytes, "machine": machine()}
    print(f"{'':44}{'GB':>8}")
    print(f"{'peak RSS of the whole run':44}{result['peak_rss_gb']:8.2f}")
    print(f"{'preprocessed training split (float32)':44}{result['training_array_gb']:8.2f}")
    print(f"ratio {result['ratio_peak_to_training_array']:.2f}; {args.rows} curves ({train_rows} training rows), "
          f"{args.epochs} epochs; {result['machine']}")
    print(f"written to {write_result('peak_memory', result)}")


if __name__ == "__main__":
    main()

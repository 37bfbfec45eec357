#!/usr/bin/env python3
"""What the spectrum branch, and its fold, cost an epoch of the trainer.

The trainer itself (``hybrid_training.py``), on the built-in data set, trains the default
network, the same without the spectrum branch (``{"model": {"spectrum_harmonics": 0}}``,
1.11's network) and with the branch's fold (``{"model": {"spectrum_coherent": true}}``) for
``--epochs`` epochs each, in fresh run folders, one after the other and
alternating, ``--repeats`` times; each epoch's time is the trainer's own (``history.npz``,
``epoch_seconds``: training, validation and the checkpoint), the first epoch (tracing) left
out. Medians.

    python3 bench/spectrum_cost.py              # 3 repeats of 6 epochs: about 18 minutes on 2 cores
    python3 bench/spectrum_cost.py --epochs 3 --repeats 1 --rows 400    # quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from common import machine, trainer_command, whole_epochs, write_result

VARIANTS = {"default (spectrum branch)": {}, "without the branch": {"model": {"spectrum_harmonics": 0}},
            "with the fold": {"model": {"spectrum_coherent": True}}}


def epoch_seconds(folder: Path, data: Path, settings: dict, epochs: int) -> list[float]:
    """The trainer's epoch times after the first, for a fresh run with these settings."""
    config = folder / "settings.json"
    config.write_text(json.dumps(settings))
    result = subprocess.run(trainer_command(folder, data, "--config", str(config), "--epochs", str(epochs)),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the trainer failed ({folder}): {result.stderr.strip().splitlines()[-1:]}")
    with np.load(folder / "checkpoints" / "history.npz", allow_pickle=False) as history:
        return [float(s) for s in history["epoch_seconds"][1:]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=5000, help="built-in curves, each read every epoch (default 5000: "
                                                               "as many as a default epoch reads of its 15000)")
    args = parser.parse_args()

    from synthetic_data import SyntheticConfig, write_synthetic_dataset

    seconds = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        write_synthetic_dataset(data, SyntheticConfig(rows=args.rows, completeness_rows=0), seed=42)
        for repeat in range(args.repeats):
            for number, (name, settings) in enumerate(VARIANTS.items()):
                folder = Path(scratch) / f"run{repeat}_{number}"
                folder.mkdir()
                variant = whole_epochs({"synthetic": {"completeness_rows": 0}} | settings)
                seconds[name] += epoch_seconds(folder, data, variant, args.epochs)
    medians = {name: float(np.median(values)) for name, values in seconds.items()}
    ratio = medians["default (spectrum branch)"] / medians["without the branch"]
    fold_ratio = medians["with the fold"] / medians["default (spectrum branch)"]
    result = {"rows": args.rows, "epochs": args.epochs, "repeats": args.repeats, "epoch_seconds": seconds,
              "median_epoch_seconds": medians, "ratio_default_to_without": ratio, "ratio_fold_to_default": fold_ratio,
              "machine": machine()}
    print(f"{'network':28}{'median epoch (s)':>18}{'epochs timed':>14}")
    for name in VARIANTS:
        print(f"{name:28}{medians[name]:18.2f}{len(seconds[name]):14d}")
    print(f"ratio {ratio:.3f} (default to without), {fold_ratio:.3f} (fold to default); {args.rows} curves, {args.epochs} epochs (the first not timed), {args.repeats} repeats; "
          f"{result['machine']}")
    print(f"written to {write_result('spectrum_cost', result)}")


if __name__ == "__main__":
    main()

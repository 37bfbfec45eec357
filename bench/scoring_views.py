#!/usr/bin/env python3
"""Scoring over more views: a run's best model on unseen built-in curves, each curve's score the
mean of the model's output over 2, 4, 8 or 16 views, paired on the same curves.

``model.predict_scores`` averages four views: the curve and the curve shifted circularly by half
the window, each also reversed in time (``model.views``). The trainer reads every training curve
shifted and reversed at random, so any shift is a view it knows; this script asks whether more
of them (shifts by quarters, by eighths) score better, against the four, on the same resamples
(``completeness.bootstrap_headline``), as ``bench/quality.py --baseline`` compares two runs.
No training: the run folder's ``models/`` is read as ``--predict`` reads it.

    python3 bench/scoring_views.py --run DIR --test-rows 20000 --test-seed 3033
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Each scorer's shifts, in eighths of the window; each view is also read reversed.
SHIFTS = {"2 views": (0,), "4 views": (0, 4), "8 views": (0, 2, 4, 6), "16 views": tuple(range(8))}
EIGHTHS = 8


def outputs_by_view(model, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """[2 * EIGHTHS, rows]: the model's output for each curve shifted by each eighth of the
    window (rounded down to a cadence, so that the half is ``model.views``' shift), as it is (even
    rows) and reversed (odd rows)."""
    cadences = inputs.shape[1]
    out = np.empty((2 * EIGHTHS, len(inputs)))
    for start in range(0, len(inputs), batch_size):
        batch = np.asarray(inputs[start:start + batch_size])
        views = []
        for eighth in range(EIGHTHS):
            shifted = np.roll(batch, eighth * cadences // EIGHTHS, axis=1)
            views += [shifted, shifted[:, ::-1]]
        output = np.asarray(model.predict_on_batch(np.concatenate(views)), dtype=np.float64)[:, 0]
        out[:, start:start + len(batch)] = output.reshape(len(views), len(batch))
        if start // batch_size % 20 == 0:
            print(f"  scored {start + len(batch)} of {len(inputs)} curves", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (its models/)")
    parser.add_argument("--test-rows", type=int, default=5000)
    parser.add_argument("--test-seed", type=int, default=2026)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()

    from completeness import HEADLINE_NAMES, bootstrap_headline, fresh_built_in_set, headline_metrics, interval, strong_hosts
    from evaluation import load_model_file
    from preprocessing import PreprocessingConfig
    from settings import Paths
    from synthetic_data import SyntheticConfig

    paths = Paths(models_dir=args.run / "models")
    config = PreprocessingConfig.from_json_file(paths.preprocessor_file)
    truth, inputs = fresh_built_in_set(args.test_rows, args.test_seed, SyntheticConfig().positive_fraction, config)
    started = time.perf_counter()
    outputs = outputs_by_view(load_model_file(paths.best_model_file), np.asarray(inputs))
    print(f"{len(inputs)} curves x {2 * EIGHTHS} views: {time.perf_counter() - started:.0f} s")
    scores = {name: outputs[[2 * s + r for s in shifts for r in (0, 1)]].mean(axis=0) for name, shifts in SHIFTS.items()}

    host, strong = np.asarray(truth.label) == 2, strong_hosts(truth)
    samples = bootstrap_headline(scores, truth, args.resamples)
    print(f"{'':10}" + "".join(f"{name:>36}" for name in HEADLINE_NAMES))
    for name, values in scores.items():
        figures = headline_metrics(values, host, strong)
        if name == "4 views":
            cells = [f"{figure:.4f}" for figure in figures]
        else:
            difference = samples[name] - samples["4 views"]
            cells = [f"{figure:.4f} ({np.nanmean(column):+.4f} [{low:+.4f}, {high:+.4f}])"
                     for figure, column, (low, high) in zip(figures, difference.T, interval(difference))]
        print(f"{name:10}" + "".join(f"{cell:>36}" for cell in cells))
    print("(in brackets: minus 4 views, the default, mean and 95 % interval over the same resamples)")


if __name__ == "__main__":
    main()

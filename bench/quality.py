#!/usr/bin/env python3
"""Quality per cost: a default run on the built-in data, scored on curves from another seed.

Trains with default settings (``python3 hybrid_training.py``, built-in data, seed 42) in a
temporary folder, then scores the best model on a fresh built-in data set generated with a
different seed (never seen, not even as validation), preprocessed exactly as in training.
Reports ROC AUC, PR AUC, recall at precision 0.9, the epoch of the best model and the wall time;
the baseline is the same model's score on the run's own test split. The run is deterministic
(same seed, same bits), so repetitions only vary the wall time (median reported); the script
checks that their scores agree.

    python3 bench/quality.py
    python3 bench/quality.py --epochs 5 --test-rows 2000     # quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, trainer_command, write_result


def one_run(args):
    """(wall seconds, the run's metrics.json, metrics on the other seed's curves) of one default run."""
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder)
        started = time.perf_counter()
        completed = subprocess.run(trainer_command(run, run / "data", "--epochs", str(args.epochs)),
                                   capture_output=True, text=True)
        wall = time.perf_counter() - started
        if completed.returncode != 0:
            raise SystemExit(f"trainer failed:\n{completed.stdout[-2000:]}")
        report = json.loads((run / "results" / "metrics.json").read_text())
        threshold = json.loads((run / "models" / "threshold.json").read_text())["threshold"]

        import keras

        from evaluation import classification_metrics
        from preprocessing import PreprocessingConfig, preprocess
        from synthetic_data import generate_light_curves

        curves = generate_light_curves(args.test_rows, args.test_seed)
        config = PreprocessingConfig.from_json_file(run / "models" / "preprocessor_hybrid.json")
        model = keras.models.load_model(run / "models" / "exoplanet_cnn_lstm.keras", safe_mode=True)
        scores = model.predict(preprocess(curves.flux.astype("float32"), config), batch_size=256, verbose=0)[:, 0]
        unseen = classification_metrics((curves.label == 2).astype(int), scores, threshold)
    return wall, report, unseen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--test-rows", type=int, default=5000)
    parser.add_argument("--test-seed", type=int, default=2026)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    walls, scores = [], []
    for _ in range(args.repeats):
        wall, report, unseen = one_run(args)
        walls.append(wall)
        scores.append((report["test"], unseen))
    if any(score != scores[0] for score in scores):
        raise SystemExit(f"repeated default runs scored differently: {scores}")
    wall = float(np.median(walls))
    result = {"epochs_trained": report["epochs_trained"], "best_epoch": report["best_epoch"], "wall_seconds": wall,
              "wall_seconds_runs": walls, "repeats": args.repeats, "own_test_split": report["test"],
              "other_seed_test": unseen, "test_seed": args.test_seed, "test_rows": args.test_rows, "machine": machine()}
    print(f"{'':34}{'ROC AUC':>9}{'PR AUC':>9}{'recall@P0.9':>13}{'hosts':>7}")
    for name, metrics in (("run's own test split", report["test"]), (f"new curves, seed {args.test_seed}", unseen)):
        print(f"{name:34}{metrics['roc_auc']:9.3f}{metrics['pr_auc']:9.3f}{metrics['recall_at_precision_0.9']:13.3f}"
              f"{metrics['positives']:7d}")
    print(f"best model from epoch {report['best_epoch']} of {report['epochs_trained']}; run took {wall:.0f} s "
          f"(median of {args.repeats}, identical scores); {result['machine']}")
    print(f"written to {write_result('quality', result)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What the many-panel figures of stage 7 cost to draw: fixed margins against matplotlib's layout.

``plots.training_history`` (6 panels) and ``plots.gallery`` (up to 9 rows of 3 panels) place
their panels with fixed margins (``plots._margins``). The baseline, run alternately in this
process on the same data, is how they were drawn before: ``fig.tight_layout()`` and, for the
history, ``bbox_inches="tight"`` when saving; both measure every label first, so each costs a
drawing of the figure more. Data: a 60-epoch history and a test split of 400 curves of the
default run's 3197 points (built-in data, preprocessed). Medians of the repeats.

    python3 bench/plot_speed.py                  # 5 repeats: about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, preprocessed_synthetic, write_result

import plots  # noqa: E402  (after common, which puts the project on the path)

FIGURES = ("training_history", "light_curve_gallery")


def draw(name: str, data: dict, folder: Path) -> None:
    path = folder / f"{name}.png"
    if name == "training_history":
        plots.training_history(data["history"], path)
    else:
        plots.gallery(data["raw"], data["processed"], data["labels"], data["scores"], 0.5, data["names"], path,
                      cadence_days=0.0204)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    processed, labels = preprocessed_synthetic(400)
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 61)
    history = {"epoch": epochs, "resumed_after": [20, 41]}
    for name in ("loss", "accuracy", "auc", "pr_auc", "precision", "recall"):
        history[name] = rng.random(epochs.size)
        history[f"val_{name}"] = rng.random(epochs.size)
    labels = np.asarray(labels).astype(int)
    data = {"history": history, "raw": 1000 + processed[..., 0] * 10, "processed": processed, "labels": labels,
            # Random scores: three curves in each group of the gallery (9 rows), as in a real run.
            "scores": rng.random(labels.size),
            "names": [f"synthetic.csv:{i}" for i in range(labels.size)]}

    fixed_margins, fixed_save = plots._margins, plots._save

    def layout_by_matplotlib(on: bool) -> None:
        if on:
            plots._margins = lambda fig, *a, **k: fig.tight_layout()
            plots._save = lambda fig, path, tight=True: fixed_save(fig, path, tight=path.stem == "training_history")
        else:
            plots._margins, plots._save = fixed_margins, fixed_save

    seconds = {(figure, variant): [] for figure in FIGURES for variant in ("fixed margins", "tight_layout")}
    with tempfile.TemporaryDirectory() as folder:
        draw("training_history", data, Path(folder))  # warm-up: fonts, caches, the BLS search's imports
        draw("light_curve_gallery", data, Path(folder))
        for _ in range(args.repeats):
            for variant in ("fixed margins", "tight_layout"):
                layout_by_matplotlib(variant == "tight_layout")
                for figure in FIGURES:
                    started = time.perf_counter()
                    draw(figure, data, Path(folder))
                    seconds[figure, variant].append(time.perf_counter() - started)
                layout_by_matplotlib(False)
    result = {"machine": machine(), "repeats": args.repeats, "rows": int(labels.size), "median_seconds": {}}
    print(f"{'figure':<22}{'fixed margins':>15}{'tight_layout':>15}{'ratio':>8}")
    for figure in FIGURES:
        fixed = float(np.median(seconds[figure, "fixed margins"]))
        tight = float(np.median(seconds[figure, "tight_layout"]))
        result["median_seconds"][figure] = {"fixed margins": fixed, "tight_layout": tight, "ratio": fixed / tight}
        print(f"{figure:<22}{fixed:>14.2f}s{tight:>14.2f}s{fixed / tight:>7.2f}x")
    print(f"written {write_result('plot_speed', result)}")


if __name__ == "__main__":
    main()

"""Result figures, written to PNG files with matplotlib's Agg backend (no screen needed).

Each function draws one figure into a file atomically; ``write_all`` draws them all and reports
(instead of raising) a figure that fails, so one broken plot never loses the others.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from atomic_io import atomic_open  # noqa: E402

log = logging.getLogger(__name__)

TRAIN_COLOUR, VAL_COLOUR, HOST_COLOUR, OTHER_COLOUR = "tab:blue", "tab:orange", "tab:red", "tab:gray"


def _save(fig, path: Path, tight: bool = True) -> None:
    """Write ``fig`` atomically; ``tight`` trims the margins, which costs a second drawing of the
    figure (the many-panel figures set their margins with ``_margins`` instead)."""
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight" if tight else None)
    plt.close(fig)


def _margins(fig, rows: int, columns: int, left: float, right: float, top: float, bottom: float,
             between_columns: float, between_rows: float) -> None:
    """Place a grid of panels with fixed margins and gaps, in inches.

    For the many-panel figures, instead of ``tight_layout`` and ``bbox_inches="tight"``, which
    each draw the figure once more to measure its labels (``bench/plot_speed.py``: the history in
    0.59x the time, the gallery in 0.73x); these panels' labels are the same size in every run,
    so margins of a fixed size fit them.
    """
    width, height = fig.get_size_inches()
    panel_width = (width - left - right - (columns - 1) * between_columns) / columns
    panel_height = (height - top - bottom - (rows - 1) * between_rows) / rows
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=between_columns / panel_width, hspace=between_rows / panel_height)


def training_history(history: dict, path: Path) -> None:
    """Every metric, train and validation, over all epochs; dashed lines where a run resumed."""
    epochs = history["epoch"]
    names = [n for n in ("loss", "accuracy", "auc", "pr_auc", "precision", "recall") if n in history]
    titles = {"loss": "Loss (weighted binary cross-entropy)", "accuracy": "Accuracy", "auc": "ROC AUC",
              "pr_auc": "PR AUC", "precision": "Precision (at 0.5)", "recall": "Recall (at 0.5)"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharex=True)
    for ax, name in zip(axes.ravel(), names):
        ax.plot(epochs, history[name], color=TRAIN_COLOUR, marker=".", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], color=VAL_COLOUR, marker=".", label="validation")
        for number, resumed in enumerate(history.get("resumed_after", [])):
            ax.axvline(resumed + 0.5, color="black", linestyle="--", linewidth=0.8,
                       label="resumed after an interruption" if number == 0 else None)
        ax.set_title(titles[name])
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Training history: {len(epochs)} epochs")
    _margins(fig, 2, 3, left=0.75, right=0.2, top=0.7, bottom=0.55, between_columns=0.75, between_rows=0.55)
    _save(fig, path, tight=False)


def roc_and_pr(labels: np.ndarray, scores: np.ndarray, threshold: float, metrics: dict, path: Path) -> None:
    """ROC and precision-recall curves of the test split, with the chosen threshold marked."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    predicted = scores >= threshold
    at_tpr = predicted[labels == 1].mean()
    at_fpr = predicted[labels == 0].mean()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    left.plot(fpr, tpr, color=TRAIN_COLOUR, label=f"model (ROC AUC {metrics['roc_auc']:.3f})")
    left.plot([0, 1], [0, 1], color=OTHER_COLOUR, linestyle=":", label="chance")
    left.scatter([at_fpr], [at_tpr], color=HOST_COLOUR, zorder=3, label=f"threshold {threshold:.3f}")
    left.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC curve, test split")
    right.plot(recall, precision, color=TRAIN_COLOUR, label=f"model (PR AUC {metrics['pr_auc']:.3f})")
    right.axhline(labels.mean(), color=OTHER_COLOUR, linestyle=":", label=f"chance ({labels.mean():.3f})")
    right.scatter([metrics["recall"]], [metrics["precision"]], color=HOST_COLOUR, zorder=3,
                  label=f"threshold {threshold:.3f}")
    right.set(xlabel="recall", ylabel="precision", title="Precision-recall curve, test split", ylim=(0, 1.02))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is left else "upper right")
    _save(fig, path)


def confusion(metrics: dict, path: Path) -> None:
    """Confusion matrix at the chosen threshold, counts and row percentages."""
    matrix = np.array([[metrics["true_negatives"], metrics["false_positives"]],
                       [metrics["false_negatives"], metrics["true_positives"]]])
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(matrix):
        share = count / max(matrix[row].sum(), 1)
        ax.text(col, row, f"{count}\n({share:.0%})", ha="center", va="center",
                color="white" if share > 0.5 else "black", fontsize=12)
    ax.set_xticks([0, 1], ["not a host", "planet host"])
    ax.set_yticks([0, 1], ["not a host", "planet host"])
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix, test split (threshold {metrics['threshold']:.3f})")
    _save(fig, path)


def score_distributions(labels: np.ndarray, scores: np.ndarray, threshold: float, path: Path) -> None:
    """Histograms of the predicted probability for hosts and non-hosts."""
    bins = np.linspace(0, 1, 41)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(scores[labels == 0], bins=bins, color=OTHER_COLOUR, alpha=0.7, label=f"not a host ({(labels == 0).sum()})")
    ax.hist(scores[labels == 1], bins=bins, color=HOST_COLOUR, alpha=0.7, label=f"planet host ({(labels == 1).sum()})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_yscale("log")
    ax.set(xlabel="predicted probability of a planet host", ylabel="curves (log scale)",
           title="Score distributions, test split")
    ax.legend()
    _save(fig, path)


def gallery(raw, processed, labels: np.ndarray, scores: np.ndarray, threshold: float,
            names: list[str], path: Path, cadence_days: float, per_group: int = 3) -> None:
    """True positives, false positives and false negatives: raw, preprocessed, and folded.

    ``raw`` [rows, cadences] and ``processed`` [rows, cadences(, channels)]: arrays or the cache's
    ``RowFile``s; only the rows shown are read. Of several channels the first is shown.

    Time is in days from the first cadence. The third column folds the preprocessed curve at
    the period a box least squares search finds in it (``transit_search``), binned, with the
    transit at phase 0: where the search locks on to the transits, they add up there.
    """
    import transit_search

    predicted = scores >= threshold
    groups = [("true positive", np.flatnonzero(predicted & (labels == 1)), -1),
              ("false positive", np.flatnonzero(predicted & (labels == 0)), -1),
              ("false negative", np.flatnonzero(~predicted & (labels == 1)), 1)]
    rows = [(title, index) for title, members, order in groups
            for index in members[np.argsort(order * scores[members])][:per_group]]
    if not rows:
        rows = [("highest score", int(np.argmax(scores)))]
    shown = np.array([index for _, index in rows])
    raw = np.asarray(raw.take(shown, axis=0))
    processed = transit_search.first_channel(processed.take(shown, axis=0))
    found = transit_search.search(processed, cadence_days)
    days = np.arange(raw.shape[1]) * cadence_days
    fig, axes = plt.subplots(len(rows), 3, figsize=(18, 2.3 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [2, 2, 1]})
    for number, ((title, index), (left, middle, right)) in enumerate(zip(rows, axes)):
        colour = HOST_COLOUR if labels[index] == 1 else TRAIN_COLOUR
        left.plot(days, raw[number], color="black", linewidth=0.5)
        left.set_title(f"{title}: {names[index]} (p = {scores[index]:.3f}) - as loaded", fontsize=9)
        left.set_ylabel("flux (file units)", fontsize=8)
        middle.plot(days, processed[number], color=colour, linewidth=0.5)
        middle.set_title("preprocessed: detrended, in units of its noise", fontsize=9)
        middle.set_ylabel("sigma", fontsize=8)
        period, epoch, duration = found.period[number], found.epoch[number], found.duration[number]
        phase, flux = transit_search.fold(processed[number], period, epoch, cadence_days)
        hours = 24.0 * phase
        right.plot(hours, flux, ".", color=OTHER_COLOUR, markersize=1.5)
        width = min(max(3.0 * 24.0 * duration, 6.0), 12.0 * period)  # hours; at most half the period
        edges = np.linspace(-width, width, 41)
        which = np.digitize(hours, edges) - 1
        inside = (which >= 0) & (which < edges.size - 1)
        sums = np.bincount(which[inside], weights=flux[inside], minlength=edges.size - 1)
        counts = np.bincount(which[inside], minlength=edges.size - 1)
        filled = counts > 0
        right.plot(((edges[:-1] + edges[1:]) / 2)[filled], sums[filled] / counts[filled], color=colour, linewidth=1.2)
        right.set_xlim(-width, width)
        right.set_title(f"folded at P = {period:.3f} d found (SDE {found.sde[number]:.1f})", fontsize=9)
        right.set_ylabel("sigma", fontsize=8)
    for ax in axes[-1][:2]:
        ax.set_xlabel("time (days from the first cadence)")
    axes[-1][2].set_xlabel("hours from mid-transit")
    fig.suptitle("Light curves the model got right and wrong (test split)", y=1 - 0.1 / fig.get_figheight(),
                 va="top")
    _margins(fig, len(rows), 3, left=0.85, right=0.15, top=0.7, bottom=0.55, between_columns=0.7, between_rows=0.6)
    _save(fig, path, tight=False)


def completeness(reports: dict, path: Path, recovery: dict | None = None) -> None:
    """Recall against transit S/N, and the false-positive rate of each kind of non-host.

    ``reports`` maps a scorer's name (the network, a BLS search, the oracle) to its
    ``completeness.completeness`` report; each threshold of each report is drawn. ``recovery``
    maps a blind search's name to its ``completeness.recovery_report`` (recall only: it counts
    no false alarms), drawn dotted beside them.
    """
    from completeness import FALSE_POSITIVE_THRESHOLD, KEPLER_MES_THRESHOLD, NEGATIVE_CLASSES, bin_labels

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw={"width_ratios": [1.1, 1]})
    any_report = next(iter(reports.values()))
    labels = bin_labels(any_report["bins"]["snr"])
    positions = np.arange(len(labels))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    series = [(scorer, name, entry) for scorer, report in reports.items()
              for name, entry in report["thresholds"].items()]
    for number, (scorer, name, entry) in enumerate(series):
        recall = [np.nan if r is None else r for r in entry["recall_by_snr"]]
        left.plot(positions, recall, marker="o", color=colours[number % len(colours)],
                  linestyle="-" if name == FALSE_POSITIVE_THRESHOLD else "--",
                  label=f"{scorer}, {name} ({entry['threshold']:.3g})")
    for number, (name, entry) in enumerate((recovery or {}).items(), start=len(series)):
        recall = [np.nan if r is None else r for r in entry["recall_by_snr"]]
        left.plot(positions, recall, marker="s", color=colours[number % len(colours)], linestyle=":",
                  label=f"{name}, recovered (S/N {KEPLER_MES_THRESHOLD}, false alarms not counted)")
    counts = any_report["hosts_by"]["snr"]
    left.set_xticks(positions, [f"{label}\n({count})" for label, count in zip(labels, counts)], fontsize=8)
    # Kepler's detection threshold, placed within its bin (bin i is drawn from i - 0.5 to i + 0.5).
    edges = [np.inf if e is None else e for e in any_report["bins"]["snr"]]
    bin_of = next(i for i in range(len(edges) - 1) if edges[i] <= KEPLER_MES_THRESHOLD < edges[i + 1])
    mes = bin_of - 0.5 + (KEPLER_MES_THRESHOLD - edges[bin_of]) / (edges[bin_of + 1] - edges[bin_of])
    left.axvline(mes, color="black", linestyle=":", linewidth=0.8)
    left.text(mes + 0.05, 0.02, f"Kepler DR25 threshold, MES {KEPLER_MES_THRESHOLD}", rotation=90, fontsize=7,
              va="bottom")
    left.set(xlabel="transit S/N (hosts per bin)", ylabel="recall", ylim=(-0.02, 1.02),
             title=f"Injection-recovery: recall against S/N ({any_report['hosts']} hosts)")
    left.grid(alpha=0.3)
    # Below the axes: inside, the legend hid the curves that reach recall 1 at low S/N.
    left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.17), ncol=2)
    kinds = [k for k in NEGATIVE_CLASSES if any_report["negatives_by_kind"].get(k)]
    width = 0.8 / max(len(series), 1)
    for number, (scorer, name, entry) in enumerate(series):
        rates = [entry["false_positive_rate_by_kind"][k] or 0.0 for k in kinds]
        right.bar(np.arange(len(kinds)) + (number - (len(series) - 1) / 2) * width, rates, width,
                  color=colours[number % len(colours)], label=f"{scorer}, {name}")
    right.set_xticks(np.arange(len(kinds)),
                     [f"{k.replace('_', ' ')}\n({any_report['negatives_by_kind'][k]})" for k in kinds],
                     rotation=35, ha="right", fontsize=8)
    right.set(ylabel="false-positive rate", title="False positives by kind of non-host (count)")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.3), ncol=2)
    fig.tight_layout()
    _save(fig, path)


def write_all(figures: dict, results_dir: Path) -> list[Path]:
    """Draw each figure (name -> zero-argument function taking the path); report failures, keep going."""
    written = []
    for name, draw in figures.items():
        path = Path(results_dir) / f"{name}.png"
        try:
            draw(path)
            written.append(path)
        except Exception as error:  # a plot is a convenience: report it, never lose the others
            plt.close("all")
            log.warning("Could not draw %s (%s: %s); the other results are unaffected", path, type(error).__name__, error)
    return written

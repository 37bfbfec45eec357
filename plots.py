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


def _save(fig, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


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
    fig.tight_layout()
    _save(fig, path)


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


def gallery(raw: np.ndarray, processed: np.ndarray, labels: np.ndarray, scores: np.ndarray, threshold: float,
            names: list[str], path: Path, per_group: int = 3) -> None:
    """True positives, false positives and false negatives: raw and preprocessed side by side."""
    predicted = scores >= threshold
    groups = [("true positive", np.flatnonzero(predicted & (labels == 1)), -1),
              ("false positive", np.flatnonzero(predicted & (labels == 0)), -1),
              ("false negative", np.flatnonzero(~predicted & (labels == 1)), 1)]
    rows = [(title, index) for title, members, order in groups
            for index in members[np.argsort(order * scores[members])][:per_group]]
    if not rows:
        rows = [("highest score", int(np.argmax(scores)))]
    fig, axes = plt.subplots(len(rows), 2, figsize=(14, 2.2 * len(rows)), squeeze=False)
    for (title, index), (left, right) in zip(rows, axes):
        left.plot(raw[index], color="black", linewidth=0.5)
        left.set_title(f"{title}: {names[index]} (p = {scores[index]:.3f}) - as loaded", fontsize=9)
        left.set_ylabel("flux (file units)", fontsize=8)
        right.plot(processed[index], color=HOST_COLOUR if labels[index] == 1 else TRAIN_COLOUR, linewidth=0.5)
        right.set_title("preprocessed: detrended, in units of its noise", fontsize=9)
        right.set_ylabel("sigma", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("cadence")
    fig.suptitle("Light curves the model got right and wrong (test split)", y=1.0)
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

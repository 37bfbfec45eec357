"""Stage [7/7]: score the best model on the held-out test split.

The decision threshold is chosen on the validation split (maximum F1), never on the test split,
and saved beside the model; the test split is scored once, at that threshold.
"""

from __future__ import annotations

import logging

import numpy as np

import atomic_io
from errors import TrainerError

log = logging.getLogger(__name__)


class NoModelError(TrainerError):
    """There is no trained model to evaluate or predict with."""


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the highest F1 on these (validation) labels."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if thresholds.size else 0.5


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """ROC AUC, PR AUC, precision/recall/F1 at ``threshold``, confusion counts, recall at precision 0.9."""
    from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score, precision_recall_curve,
                                 precision_score, recall_score, roc_auc_score)

    predicted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    precision_curve, recall_curve, _ = precision_recall_curve(labels, scores)
    reachable = recall_curve[precision_curve >= 0.9]
    both = len(np.unique(labels)) == 2
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "pr_auc": float(average_precision_score(labels, scores)) if both else None,
        "threshold": float(threshold),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "recall_at_precision_0.9": float(reachable.max()) if reachable.size else 0.0,
        "true_positives": int(tp), "false_positives": int(fp), "true_negatives": int(tn), "false_negatives": int(fn),
        "positives": int(labels.sum()), "negatives": int(labels.size - labels.sum()),
    }


def load_best_model(path):
    import keras

    if not path.exists():
        raise NoModelError(f"no trained model at {path}; train first: python3 hybrid_training.py")
    return keras.models.load_model(path, safe_mode=True)


def evaluate(settings, data, state) -> dict:
    """Score the best model on the test split; write results/metrics.json."""
    paths = settings.paths
    model = load_best_model(paths.best_model_file)
    batch = settings.training.batch_size * 8
    val_scores = model.predict(data.inputs("val"), batch_size=batch, verbose=0)[:, 0]
    threshold = choose_threshold(data.labels("val"), val_scores)
    test_scores = model.predict(data.inputs("test"), batch_size=batch, verbose=0)[:, 0]
    metrics = classification_metrics(data.labels("test"), test_scores, threshold)
    report = {"test": metrics, "best_epoch": state.best_epoch, "best_val_auc": state.best_value,
              "epochs_trained": state.epoch, "threshold_source": "validation split, maximum F1",
              "settings_fingerprint": state.fingerprint}
    atomic_io.write_json(paths.models_dir / "threshold.json", {"threshold": threshold, "best_epoch": state.best_epoch})
    atomic_io.write_json(paths.results_dir / "metrics.json", report)
    log.info("Test split (%d curves, %d planet hosts), best model from epoch %d, threshold %.3f (from validation):",
             metrics["positives"] + metrics["negatives"], metrics["positives"], state.best_epoch, threshold)
    for name in ("roc_auc", "pr_auc", "precision", "recall", "f1", "recall_at_precision_0.9"):
        value = metrics[name]
        log.info("  %-24s %s", name, f"{value:.4f}" if value is not None else "n/a")
    log.info("  confusion: TP %d  FP %d  FN %d  TN %d", metrics["true_positives"], metrics["false_positives"],
             metrics["false_negatives"], metrics["true_negatives"])
    log.info("Metrics written to %s", paths.results_dir / "metrics.json")
    return report


def predict(settings) -> None:
    raise NoModelError("--predict is not available yet in this version")

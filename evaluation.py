"""Stage [7/7] and ``--predict``: score the best model, draw the results, predict new curves.

The decision threshold is chosen on the validation split (maximum F1), never on the test split,
and saved beside the model (``Paths.threshold_file``); the test split is scored once, at that
threshold. All metrics come from scikit-learn.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np

import atomic_io
from errors import TrainerError
from synthetic_data import CADENCE_DAYS, is_built_in

log = logging.getLogger(__name__)

METRIC_LABELS = (("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC (average precision)"), ("precision", "precision"),
                 ("recall", "recall"), ("f1", "F1"), ("recall_at_precision_0.9", "recall at precision 0.9"))


class NoModelError(TrainerError):
    """There is no trained model to evaluate or predict with."""


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the highest F1 on these (validation) labels."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if thresholds.size else 0.5


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """ROC AUC, PR AUC, precision/recall/F1 at ``threshold``, confusion counts, recall at precision 0.9."""
    from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score, precision_recall_curve,
                                 precision_score, recall_score, roc_auc_score)

    labels = np.asarray(labels).astype(int)
    predicted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    both = len(np.unique(labels)) == 2
    if both:
        precision_curve, recall_curve, _ = precision_recall_curve(labels, scores)
        reachable = recall_curve[precision_curve >= 0.9]
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "pr_auc": float(average_precision_score(labels, scores)) if both else None,
        "threshold": float(threshold),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "recall_at_precision_0.9": (float(reachable.max()) if reachable.size else 0.0) if both else None,
        "true_positives": int(tp), "false_positives": int(fp), "true_negatives": int(tn), "false_negatives": int(fn),
        "positives": int(labels.sum()), "negatives": int(labels.size - labels.sum()),
    }


def log_metrics(metrics: dict, heading: str) -> None:
    log.info(heading)
    for name, label in METRIC_LABELS:
        value = metrics[name]
        log.info("  %-28s %s", label, f"{value:.4f}" if value is not None else "n/a (one class only)")
    log.info("  %-28s TP %d  FP %d  FN %d  TN %d", "confusion matrix", metrics["true_positives"],
             metrics["false_positives"], metrics["false_negatives"], metrics["true_negatives"])


def load_model_file(path: Path):
    """A Keras model from ``path``; NoModelError naming the file if it cannot be loaded."""
    from quiet_tensorflow import import_tensorflow

    import_tensorflow()
    import keras

    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many kinds; any of them means the file is unusable
        raise NoModelError(f"{path}: cannot be loaded as a Keras model ({str(error).splitlines()[0][:120]}); "
                           f"retrain with python3 hybrid_training.py, or restore it from a backup") from None


def _scores(model, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    from model import predict_scores

    return predict_scores(model, inputs, batch_size)


def evaluate(settings, data, state) -> dict:
    """Score the best model on the test split; write results/metrics.json and the plots."""
    import plots

    from checkpoint_callback import CheckpointStore

    paths = settings.paths
    # A best model lost or damaged since it was saved is restored from the checkpoint set.
    model = load_model_file(CheckpointStore(paths.checkpoint_dir).recover_best_model(state, paths.best_model_file))
    batch = max(256, settings.training.batch_size)
    threshold = choose_threshold(data.labels("val"), _scores(model, data.inputs("val"), batch))
    atomic_io.write_json(paths.threshold_file,
                         {"threshold": threshold, "chosen_on": "validation split, maximum F1",
                          "best_epoch": state.best_epoch})
    labels = data.labels("test")
    scores = _scores(model, data.inputs("test"), batch)
    metrics = classification_metrics(labels, scores, threshold)
    report = {"test": metrics, "threshold_chosen_on": "validation split, maximum F1",
              "best_epoch": state.best_epoch, "best_val_auc": state.best_value, "epochs_trained": state.epoch,
              "settings_fingerprint": state.fingerprint}
    metrics_file = paths.metrics_file
    atomic_io.write_json(metrics_file, report)
    log_metrics(metrics, f"Test split: {labels.size} curves, {metrics['positives']} planet hosts; best model from "
                         f"epoch {state.best_epoch}; threshold {threshold:.3f} chosen on the validation split")
    log.info("Metrics written to %s", metrics_file)

    history = state.history_arrays()
    names = [f"{data.files[s]}:{line}" for s, line in zip(data.source_test, data.line_test)]
    written = plots.write_all({
        "training_history": lambda p: plots.training_history(history, p),
        "roc_pr_curves": lambda p: plots.roc_and_pr(labels, scores, threshold, metrics, p),
        "confusion_matrix": lambda p: plots.confusion(metrics, p),
        "score_distributions": lambda p: plots.score_distributions(labels, scores, threshold, p),
        "light_curve_gallery": lambda p: plots.gallery(data.raw_test, data.inputs("test")[:, :, 0], labels, scores,
                                                      threshold, names, p, CADENCE_DAYS),
    }, paths.results_dir)
    log.info("Plots written: %s", ", ".join(str(p) for p in written))
    if settings.synthetic.completeness_rows and is_built_in(paths.data_dir, data.files):
        import completeness

        completeness.evaluate_built_in(model, settings.preprocessing, threshold, settings.seed,
                                       settings.synthetic.completeness_rows, paths.completeness_file)
    return report


def _read_preprocessing(path: Path):
    from preprocessing import PreprocessingConfig

    if not (path.exists() or path.is_symlink()):
        raise NoModelError(f"no trained model: {path} is missing; train one first (python3 hybrid_training.py), "
                           f"which writes it")
    try:
        return PreprocessingConfig.from_json_file(path)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise NoModelError(f"{path} is damaged ({str(error).splitlines()[0][:100] or type(error).__name__}); rerun "
                           f"python3 hybrid_training.py with the training run's settings: it rewrites this file "
                           f"(and resumes or only evaluates)") from None


def _read_threshold(path: Path) -> float:
    """The validation-chosen threshold; 0.5, with a warning, when it is missing or damaged."""
    try:
        threshold = float(json.loads(path.read_bytes())["threshold"])
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold {threshold} outside 0-1")
        return threshold
    except FileNotFoundError:
        log.warning("WARNING: no %s (training was not evaluated yet): using threshold 0.5", path)
    except (OSError, ValueError, TypeError, KeyError) as error:
        log.warning("WARNING: %s is damaged (%s): using threshold 0.5; rerun python3 hybrid_training.py to "
                    "evaluate again and rewrite it", path, str(error).splitlines()[0][:80] or type(error).__name__)
    return 0.5


def _usable_best_model(paths) -> Path:
    """The best model's path, restored from the checkpoint set first if it is lost, damaged or
    another run's (its settings fingerprint differs from the checkpoint's)."""
    from checkpoint_callback import CheckpointDamaged, CheckpointError, CheckpointStore, read_state_from_model_file

    best, why = None, None
    try:
        best = read_state_from_model_file(paths.best_model_file)
    except CheckpointDamaged as damage:
        why = str(damage)
    store = CheckpointStore(paths.checkpoint_dir)
    state, _ = store.first_readable()
    if best is not None and (state is None or best.fingerprint == state.fingerprint):
        return paths.best_model_file
    if state is None:
        raise NoModelError(f"no usable trained model: {paths.best_model_file}: {why}, and {paths.checkpoint_dir} "
                           f"holds no checkpoint to restore it from; train one first: python3 hybrid_training.py")
    try:
        return store.recover_best_model(state, paths.best_model_file)
    except (OSError, CheckpointError) as error:
        raise NoModelError(f"{paths.best_model_file}: {why or 'another run'}, and restoring it from "
                           f"{paths.checkpoint_dir} failed ({error}); retrain with python3 hybrid_training.py") from None


def _csv_files(targets) -> list:
    from datasets import DataError, DataFile, discover_csv_files

    files = []
    for target in targets:
        target = Path(target)
        if target.is_dir():
            found, _ = discover_csv_files(target)
            if not found:
                raise DataError(f"{target}: no CSV files in this folder; give CSV files or folders holding them")
            files += found
        elif target.is_file():
            stat = target.stat()
            files.append(DataFile(path=target, name=str(target), size=stat.st_size, mtime_ns=stat.st_mtime_ns))
        else:
            raise DataError(f"{target}: no such file or folder; check the path given to --predict")
    return files


def predict(settings) -> Path:
    """Score light curves with the best model and the training-time preprocessing.

    Writes results/predictions.csv (file, line, probability, predicted host, true host when
    labelled); with labels, also logs the metrics of ``evaluate`` for those curves.
    """
    from datasets import load_file
    from preprocessing import preprocess

    paths = settings.paths
    config = _read_preprocessing(paths.preprocessor_file)
    threshold = _read_threshold(paths.threshold_file)
    files = _csv_files(settings.predict)
    model = load_model_file(_usable_best_model(paths))
    expected = model.inputs[0].shape[1]
    if expected != config.sequence_length:
        raise NoModelError(f"{paths.best_model_file} takes curves of {expected} points but {paths.preprocessor_file} "
                           f"makes {config.sequence_length}: they come from different runs; retrain, or restore "
                           f"both from the same run")
    rows, all_scores, all_labels = [], [], []
    for data_file in files:
        flux, label, lines, report = load_file(data_file.path, config, require_labels=False)
        scores = _scores(model, preprocess(flux, config), 256) if len(flux) else np.empty(0)
        dropped = f", {report['dropped_rows']} mostly-missing rows skipped" if report["dropped_rows"] else ""
        log.info("  %s: %d curves scored%s", data_file.path, len(scores), dropped)
        for line, score, truth in zip(lines, scores, label):
            rows.append([str(data_file.path), int(line), f"{score:.6f}", int(score >= threshold),
                         "" if truth < 0 else int(truth)])
        all_scores.append(scores)
        all_labels.append(label)
    output = paths.predictions_file
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "line", "probability", "predicted_host", "true_host"])
    writer.writerows(rows)
    atomic_io.write_text(output, buffer.getvalue())
    scores, labels = np.concatenate(all_scores), np.concatenate(all_labels)
    log.info("Predicted %d curves (%d above the threshold %.3f); written to %s", scores.size,
             int((scores >= threshold).sum()), threshold, output)
    labelled = labels >= 0
    if labelled.any():
        log_metrics(classification_metrics(labels[labelled], scores[labelled], threshold),
                    f"Metrics on the {int(labelled.sum())} labelled curves:")
    return output

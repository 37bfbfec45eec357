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
    from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score, precision_score, recall_score,
                                 roc_auc_score)

    labels = np.asarray(labels).astype(int)
    predicted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    both = len(np.unique(labels)) == 2
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "pr_auc": float(average_precision_score(labels, scores)) if both else None,
        "threshold": float(threshold),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "recall_at_precision_0.9": recall_at_precision(labels, scores, 0.9) if both else None,
        "true_positives": int(tp), "false_positives": int(fp), "true_negatives": int(tn), "false_negatives": int(fn),
        "positives": int(labels.sum()), "negatives": int(labels.size - labels.sum()),
    }


def recall_at_precision(labels: np.ndarray, scores: np.ndarray, precision: float,
                        sample_weight: np.ndarray | None = None) -> float:
    """The highest recall of any threshold whose precision is at least ``precision`` (0 if none);
    ``sample_weight``: each curve counted that many times (a sample standing for a whole set).

    >>> recall_at_precision(np.array([1, 0, 1, 1]), np.array([0.9, 0.8, 0.7, 0.1]), 0.75)  # all four: 3 of 4
    1.0
    >>> recall_at_precision(np.array([1, 0, 1, 1]), np.array([0.9, 0.8, 0.7, 0.1]), 0.75,
    ...                     sample_weight=np.array([1, 3, 1, 1]))  # the negative counted thrice: the first alone
    0.3333333333333333
    """
    return threshold_at_precision(labels, scores, precision, sample_weight)[0]


def threshold_at_precision(labels: np.ndarray, scores: np.ndarray, precision: float,
                           sample_weight: np.ndarray | None = None) -> tuple[float, float]:
    """(recall, threshold): ``recall_at_precision``, and the highest score threshold that gives it
    (of several with the same recall, the one that passes fewest negatives); (0.0, inf) if none.

    >>> threshold_at_precision(np.array([1, 0, 1, 1]), np.array([0.9, 0.8, 0.7, 0.1]), 0.8)
    (0.3333333333333333, 0.9)
    """
    from sklearn.metrics import precision_recall_curve

    precision_curve, recall_curve, thresholds = precision_recall_curve(labels, scores, sample_weight=sample_weight)
    # The curve's last point (precision 1, recall 0) has no threshold; a recall of 0 needs none.
    reachable = np.flatnonzero(precision_curve[:-1] >= precision)
    if not reachable.size:
        return 0.0, float("inf")
    recall = recall_curve[reachable].max()
    return float(recall), float(thresholds[reachable[recall_curve[reachable] == recall][-1]])


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
    from model import load_saved_model

    try:
        model = load_saved_model(path)
    except Exception as error:  # Keras raises many kinds; any of them means the file is unusable
        raise NoModelError(f"{path}: cannot be loaded as a Keras model ({str(error).splitlines()[0][:120]}); "
                           f"retrain with python3 hybrid_training.py, or restore it from a backup") from None
    if getattr(model.optimizer, "use_ema", False):
        # The saved file holds the training weights and, in the optimizer, their moving average,
        # which is what validation measured and chose: predict with the average.
        model.optimizer.finalize_variable_values(model.trainable_variables)
    return model


def _scores(model, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    from model import predict_scores

    return predict_scores(model, inputs, batch_size)


def evaluate(paths, data, state, batch_size: int, preprocessing, seed: int, completeness_rows: int) -> dict:
    """Score the best model on the test split; write results/metrics.json and the plots.

    ``paths``: the run's folders; ``preprocessing``, ``seed`` and ``completeness_rows`` serve the
    completeness study on fresh built-in curves (run only for a model trained on built-in data).
    """
    import plots

    from checkpoint_callback import CheckpointStore

    # A best model lost or damaged since it was saved is restored from the checkpoint set.
    model = load_model_file(CheckpointStore(paths.checkpoint_dir).recover_best_model(state, paths.best_model_file))
    batch = max(256, batch_size)
    # On the validation split's own curves: its injected copies would skew the host fraction.
    own = ~data.splits["val"].augmented
    threshold = choose_threshold(data.labels("val")[own], _scores(model, data.inputs("val"), batch)[own])
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
        "light_curve_gallery": lambda p: plots.gallery(data.raw_test, data.inputs("test"), labels, scores,
                                                      threshold, names, p, CADENCE_DAYS),
    }, paths.results_dir)
    log.info("Plots written: %s", ", ".join(str(p) for p in written))
    if completeness_rows and is_built_in(paths.data_dir, data.files):
        import completeness

        completeness.evaluate_built_in(model, preprocessing, threshold, seed, completeness_rows,
                                       paths.completeness_file)
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


def _light_curve_files(targets, labels_file: Path | None) -> list:
    """The files to score: each file given, and the light-curve files in each folder given
    (but the labels table)."""
    from datasets import DataError, DataFile, discover_files, file_layout

    files = []
    for target in targets:
        target = Path(target)
        if target.is_dir():
            found, _ = discover_files(target, labels_file)
            if not found:
                raise DataError(f"{target}: no light-curve files (CSV, TSV, FITS) in this folder; give files or "
                                "folders holding them")
            files += [DataFile(path=f.path, name=str(f.path), size=f.size, mtime_ns=f.mtime_ns, layout=f.layout)
                      for f in found]
        elif target.is_file():
            stat = target.stat()
            files.append(DataFile(path=target, name=str(target), size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                                  layout=file_layout(target)))
        else:
            raise DataError(f"{target}: no such file or folder; check the path given to --predict")
    return files


def _prediction_config(settings):
    """The training run's preprocessing, with the reading settings given on this command line."""
    import dataclasses

    from preprocessing import PreprocessingConfig

    config = _read_preprocessing(settings.paths.preprocessor_file)
    given, default = settings.preprocessing, PreprocessingConfig()
    # How to read the files (not how to preprocess them) may differ from training's files.
    reading = {name: getattr(given, name) for name in ("flux_column", "row_cadence_minutes", "quality_bitmask")
               if getattr(given, name) != getattr(default, name)}
    return dataclasses.replace(config, **reading) if reading else config


def _survey_labels(settings, files) -> dict[str, int]:
    """Labels of the one-star files from --labels (for metrics); mismatches are warnings here."""
    from datasets import SURVEY
    from labels_table import match, read_labels
    from survey_files import survey_star

    if settings.labels is None:
        return {}
    table = read_labels(settings.labels)
    survey = [(f.name, survey_star(f.path)) for f in files if f.layout == SURVEY]
    labels, unlabelled = match(table, survey, allow_unlabelled=True, require_files=False)
    if unlabelled:
        log.warning("WARNING: %d scored file(s) have no label in %s and are left out of the metrics: %s%s",
                    len(unlabelled), settings.labels, ", ".join(unlabelled[:3]), ", ..." if len(unlabelled) > 3 else "")
    return labels


def combine_windows(scores: np.ndarray, how: str) -> float:
    """A star's score from its windows' scores: the maximum (a transit in any window), mean or median."""
    return float({"max": np.max, "mean": np.mean, "median": np.median}[how](scores))


def predict(settings) -> Path:
    """Score light curves with the best model and the training-time preprocessing.

    Every file given (any layout, mixed) is cut into windows on the model's grid as in
    training. Writes results/predictions.csv, one row per star (its windows combined,
    ``settings.combine``: the maximum by default) and results/predictions_windows.csv, one row
    per window. With labels (Kaggle's LABEL column, or ``--labels`` for survey files) it also
    logs the metrics of ``evaluate``, per star.
    """
    from datasets import SURVEY, load_file, load_survey_file
    from preprocessing import preprocess

    paths = settings.paths
    config = _prediction_config(settings)
    threshold = _read_threshold(paths.threshold_file)
    files = _light_curve_files(settings.predict, settings.labels)
    survey_labels = _survey_labels(settings, files)
    model = load_model_file(_usable_best_model(paths))
    expected, channels = model.inputs[0].shape[1], model.inputs[0].shape[2]
    if (expected, channels) != (config.sequence_length, config.channels):
        raise NoModelError(f"{paths.best_model_file} takes curves of {expected} points in {channels} channel(s) but "
                           f"{paths.preprocessor_file} makes {config.sequence_length} in {config.channels}: they come "
                           f"from different runs; retrain, or restore both from the same run")
    stars: dict[str, dict] = {}
    window_rows = []
    for data_file in files:
        if data_file.layout == SURVEY:
            loaded = load_survey_file(data_file.path, config, survey_labels.get(data_file.name, -1))
        else:
            loaded = load_file(data_file.path, config, require_labels=False)
        scores = _scores(model, preprocess(loaded.flux, config), 256) if len(loaded.flux) else np.empty(0)
        dropped = loaded.report["dropped_rows"]
        log.info("  %s: %d window%s scored%s", data_file.path, len(scores), "" if len(scores) == 1 else "s",
                 f", {dropped} mostly-empty {'windows' if data_file.layout == SURVEY else 'rows'} skipped"
                 if dropped else "")
        for number in range(len(scores)):
            if data_file.layout == SURVEY:
                key, line = loaded.star, ""
                start = f"{loaded.start_day[number]:.4f}"
                observed = f"{loaded.observed[number]:.3f}"
            else:
                key, line = f"{data_file.path}:{loaded.line[number]}", int(loaded.line[number])
                start, observed = "", ""
            star = stars.setdefault(key, {"mission": set(), "segments": [], "files": [], "scores": [], "labels": [],
                                          "line": line})
            star["mission"].add(loaded.mission)
            for collection, value in (("segments", loaded.segment), ("files", str(data_file.path))):
                if value and value not in star[collection]:
                    star[collection].append(value)
            star["scores"].append(float(scores[number]))
            star["labels"].append(int(loaded.label[number]))
            window_rows.append([key, loaded.mission, loaded.segment, str(data_file.path),
                                loaded.line[number] if data_file.layout == SURVEY else line, start, observed,
                                f"{scores[number]:.6f}", "" if loaded.label[number] < 0 else int(loaded.label[number])])
    star_rows, star_scores, star_labels = [], [], []
    for key, star in stars.items():
        score = combine_windows(np.array(star["scores"]), settings.combine)
        labelled = [value for value in star["labels"] if value >= 0]
        truth = max(labelled) if labelled else -1
        star_rows.append([key, " ".join(sorted(m for m in star["mission"] if m)), " ".join(star["segments"]),
                          ";".join(star["files"]), star["line"], len(star["scores"]), f"{score:.6f}",
                          int(score >= threshold), "" if truth < 0 else truth])
        star_scores.append(score)
        star_labels.append(truth)
    _write_csv(paths.predictions_file, ["star", "mission", "segments", "file", "line", "windows", "probability",
                                        "predicted_host", "true_host"], star_rows)
    _write_csv(paths.window_predictions_file, ["star", "mission", "segment", "file", "line_or_window", "start_day",
                                               "observed_fraction", "probability", "true_host"], window_rows)
    scores, labels = np.array(star_scores), np.array(star_labels, dtype=np.int64)
    log.info("Predicted %d stars from %d windows (%d stars above the threshold %.3f; a star's score is the %s of its "
             "windows'); written to %s and %s", scores.size, len(window_rows), int((scores >= threshold).sum()),
             threshold, settings.combine, paths.predictions_file, paths.window_predictions_file.name)
    for row in star_rows if len(star_rows) <= 50 else []:
        log.info("  %-32s %-7s %-10s %2d window%s  p = %s%s", row[0][-32:], row[1], row[2][:10], row[5],
                 " " if row[5] == 1 else "s", row[6], f"  (label {'host' if row[8] == 1 else 'non-host'})"
                 if row[8] != "" else "")
    labelled = labels >= 0
    if labelled.any():
        log_metrics(classification_metrics(labels[labelled], scores[labelled], threshold),
                    f"Metrics on the {int(labelled.sum())} labelled stars:")
    return paths.predictions_file


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_io.write_text(path, buffer.getvalue())

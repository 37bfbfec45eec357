"""Evaluation metrics, threshold choice, plots, predictions and the training log."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score

from conftest import make_workdir, read_cache, run_trainer, write_csv
from evaluation import choose_threshold, classification_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_metrics_equal_scikit_learn_on_known_arrays():
    labels = np.array([0, 0, 0, 0, 1, 1, 0, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.2, 0.3, 0.05, 0.6])
    metrics = classification_metrics(labels, scores, threshold=0.5)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(labels, scores))
    predicted = (scores >= 0.5).astype(int)
    assert metrics["f1"] == pytest.approx(f1_score(labels, predicted))
    tn, fp, fn, tp = confusion_matrix(labels, predicted).ravel()
    assert (metrics["true_positives"], metrics["false_positives"], metrics["false_negatives"],
            metrics["true_negatives"]) == (tp, fp, fn, tn) == (3, 1, 1, 5)
    assert metrics["precision"] == 0.75 and metrics["recall"] == 0.75
    # Precision >= 0.9 is reached only at the top two scores (0.9 and 0.8 -> 1 of 2 is a host? no):
    # sorted: 0.9 (host), 0.8 (not), 0.7 (host) -> precision 1.0 at recall 0.25 only.
    assert metrics["recall_at_precision_0.9"] == 0.25
    assert metrics["positives"] == 4 and metrics["negatives"] == 6


def test_threshold_maximises_f1_on_the_labels_it_is_given():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.65, 0.6, 0.7, 0.8])
    # 0.6 keeps every host and one false positive (F1 0.857); 0.7 loses one host (F1 0.8).
    assert choose_threshold(labels, scores) == pytest.approx(0.6)


@pytest.fixture(scope="module")
def trained(reference, tmp_path_factory):
    """The reference run (a tiny model, 6 epochs), evaluated again with completeness on."""
    from conftest import EPOCHS, TINY_CONFIG
    import shutil

    ref, _, _ = reference
    workdir = tmp_path_factory.mktemp("evaluated")
    shutil.copytree(ref, workdir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock", "console.*"))
    config = workdir / "tiny.json"
    # Stage 7's injection-recovery on 80 fresh curves (off in the other tests' runs, for time).
    config.write_text(json.dumps(TINY_CONFIG | {"synthetic": TINY_CONFIG["synthetic"] | {"completeness_rows": 80}}))
    second = run_trainer(workdir, "--config", str(config), "--epochs", str(EPOCHS))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Training already finished" in second.stdout
    return workdir, config, None, second


def test_evaluation_writes_metrics_with_the_validation_threshold(trained):
    from evaluation import load_model_file

    workdir, _, _, second = trained
    report = json.loads((workdir / "results" / "metrics.json").read_text())
    threshold = json.loads((workdir / "models" / "threshold.json").read_text())["threshold"]
    assert report["test"]["threshold"] == threshold
    assert report["threshold_chosen_on"] == "validation split, maximum F1"
    assert 1 <= report["best_epoch"] <= 6 and report["settings_fingerprint"]["seed"] == 42
    # Recompute from the cache and the best model (its averaged weights, as the trainer predicts
    # with them): the threshold is validation's, the metrics test's.
    model = load_model_file(workdir / "models" / "exoplanet_cnn_lstm.keras")
    val, test = (four_view_mean(model, read_cache(workdir, name)) for name in ("X_val", "X_test"))
    # Chosen on the validation split's own curves: its injected copies (after them) are left out.
    own = ~read_cache(workdir, "augmented_val")
    assert own.sum() == 36 and own[:36].all() and own.size > 36
    assert threshold == pytest.approx(choose_threshold(read_cache(workdir, "y_val")[own], val[own]), abs=1e-6)
    assert report["test"]["roc_auc"] == pytest.approx(roc_auc_score(read_cache(workdir, "y_test"), test), abs=1e-6)
    assert "ROC AUC" in second.stdout and "chosen on the validation split" in second.stdout


def four_view_mean(model, x):
    """The model's mean output over the curve, reversed, shifted by half, and both (model.predict_scores)."""
    shifted = np.roll(x, x.shape[1] // 2, axis=1)
    outputs = [model.predict(view, verbose=0)[:, 0] for view in (x, x[:, ::-1], shifted, shifted[:, ::-1])]
    return np.mean(outputs, axis=0)


def test_every_plot_is_a_real_png(trained):
    workdir = trained[0]
    for name in ("training_history", "roc_pr_curves", "confusion_matrix", "score_distributions",
                 "light_curve_gallery"):
        data = (workdir / "results" / f"{name}.png").read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 15_000, name


def test_a_run_on_built_in_data_measures_completeness_on_fresh_curves(trained):
    workdir, _, _, second = trained
    data = (workdir / "results" / "completeness.png").read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 15_000
    report = json.loads((workdir / "results" / "completeness.json").read_text())
    assert report["curves"] == 80 and report["hosts"] == 20 and report["seed"] == 42 + 1000
    assert set(report["thresholds"]) == {"validation threshold", "1% false-positive rate"}
    entry = report["thresholds"]["1% false-positive rate"]
    assert entry["false_positive_rate"] <= 0.01 + 1e-9
    assert sum(report["hosts_by"]["snr"]) == 20 and len(entry["recall_by_snr"]) == len(report["bins"]["snr"]) - 1
    assert "Injection-recovery on fresh built-in curves" in second.stdout


def test_predict_round_trip_matches_the_model_on_cached_rows(trained):
    from evaluation import load_model_file

    workdir, config, _, _ = trained
    result = run_trainer(workdir, "--config", str(config), "--predict", str(workdir / "data"))
    assert result.returncode == 0, result.stdout + result.stderr
    with open(workdir / "results" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    # One row per star: a Kaggle row is a star (its file and line name it), one window here.
    assert len(rows) == 240 and list(rows[0]) == ["star", "mission", "segments", "file", "line", "windows",
                                                  "probability", "predicted_host", "true_host"]
    assert rows[0]["star"] == f"{rows[0]['file']}:{rows[0]['line']}" and rows[0]["windows"] == "1"
    by_line = {int(r["line"]): float(r["probability"]) for r in rows}
    model = load_model_file(workdir / "models" / "exoplanet_cnn_lstm.keras")
    expected = four_view_mean(model, read_cache(workdir, "X_test"))
    got = np.array([by_line[int(line)] for line in read_cache(workdir, "line_test")])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert "Metrics on the 240 labelled stars" in result.stdout


def test_predict_without_labels_and_with_errors(trained, tmp_path):
    workdir, config, _, _ = trained
    rng = np.random.default_rng(0)
    unlabelled = tmp_path / "new.csv"
    flux = 500 + rng.normal(size=(3, 200))
    unlabelled.write_text("\n".join([",".join(f"FLUX.{i}" for i in range(1, 201))] +
                                    [",".join(map(str, row)) for row in flux]) + "\n")
    ok = run_trainer(workdir, "--config", str(config), "--predict", str(unlabelled))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rows = list(csv.DictReader(open(workdir / "results" / "predictions.csv")))
    assert len(rows) == 3 and all(r["true_host"] == "" for r in rows)
    bad = write_csv(tmp_path / "bad.csv", [2, 1], [[1.0, 2.0], [3.0, 4.0]], header=["LABEL", "FLUX.1", "FLUX.1"])
    failed = run_trainer(workdir, "--config", str(config), "--predict", str(bad))
    assert failed.returncode == 2 and f"ERROR: {bad}: duplicate column names FLUX.1" in failed.stderr
    empty = make_workdir(tmp_path)
    missing = run_trainer(empty, "--predict", str(unlabelled))
    assert missing.returncode == 2 and "no trained model" in missing.stderr and "train one first" in missing.stderr
    assert "Traceback" not in failed.stdout + failed.stderr + missing.stdout + missing.stderr


def test_log_has_one_header_per_run_and_the_resumed_runs_lines(trained):
    workdir, _, first, second = trained
    text = (workdir / "training_full.log").read_text()
    headers = [line for line in text.splitlines() if line.startswith("===== ")]
    assert len(headers) >= 2
    assert "(no checkpoint)" in headers[0] and "--epochs 6" in headers[0]
    assert "(resuming from checkpoint)" in headers[1] and "--epochs 6" in headers[1]
    assert "Epoch 6/6" in text and "CHECKPOINT FOUND - RESUMING TRAINING" in text
    assert text.index("Epoch 6/6") < text.index(headers[1]) < text.rindex("Training already finished")


def test_a_run_with_extra_detrending_windows_trains_and_predicts_on_every_channel(tiny_data, tmp_path):
    from conftest import TINY_CONFIG
    from evaluation import load_model_file
    from preprocessing import PreprocessingConfig, preprocess

    workdir = make_workdir(tmp_path, tiny_data)
    config = tmp_path / "channels.json"
    config.write_text(json.dumps(TINY_CONFIG | {"preprocessing": TINY_CONFIG["preprocessing"]
                                                | {"extra_detrend_windows": [41, 61]}}))
    result = run_trainer(workdir, "--config", str(config), "--epochs", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    x_test = read_cache(workdir, "X_test")
    assert x_test.shape[1:] == (128, 3)
    # The saved settings carry the windows, so prediction makes the same three channels.
    saved = PreprocessingConfig.from_json_file(workdir / "models" / "preprocessor_hybrid.json")
    assert saved.extra_detrend_windows == (41, 61) and saved.channels == 3
    one_window = preprocess(read_cache(workdir, "raw_test"),
                            PreprocessingConfig(**TINY_CONFIG["preprocessing"] | {"extra_detrend_windows": []}))
    assert np.array_equal(x_test[..., :1], one_window)  # channel 0 is the one-window run's input
    model = load_model_file(workdir / "models" / "exoplanet_cnn_lstm.keras")
    assert model.input_shape == (None, 128, 3)
    predicted = run_trainer(workdir, "--config", str(config), "--predict", str(workdir / "data"))
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    with open(workdir / "results" / "predictions.csv") as handle:
        by_line = {int(r["line"]): float(r["probability"]) for r in csv.DictReader(handle)}
    got = np.array([by_line[int(line)] for line in read_cache(workdir, "line_test")])
    np.testing.assert_allclose(got, four_view_mean(model, x_test), atol=2e-6)

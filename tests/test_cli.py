"""The command line: the flags users script against, and bad settings."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from settings import SettingsError, parse_settings

CONTRACT = ("--data-dir", "--checkpoint-dir", "--models-dir", "--results-dir", "--epochs", "--batch-size", "--seed",
            "--fresh", "--status", "--predict")


def test_help_explains_every_contract_flag():
    result = subprocess.run([sys.executable, str(ROOT / "hybrid_training.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for flag in CONTRACT:
        assert flag in result.stdout


def test_defaults_reproduce_the_design_and_paths_derive_from_the_flags(tmp_path):
    settings = parse_settings([])
    assert (settings.training.epochs, settings.training.batch_size, settings.seed) == (60, 32, 42)
    assert str(settings.paths.cache_file) == "checkpoints/training_data.npz"
    assert str(settings.paths.best_model_file) == "models/exoplanet_cnn_lstm.keras"
    moved = parse_settings(["--checkpoint-dir", str(tmp_path / "c"), "--models-dir", str(tmp_path / "m")])
    assert moved.paths.cache_file == tmp_path / "c" / "training_data.npz"
    assert moved.paths.preprocessor_file == tmp_path / "m" / "preprocessor_hybrid.json"


def test_config_file_overrides_by_name_and_rejects_unknown_keys(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": {"lstm_units": 16}, "preprocessing": {"detrend_window": 61}}))
    settings = parse_settings(["--config", str(config)])
    assert settings.model.lstm_units == 16 and settings.preprocessing.detrend_window == 61
    config.write_text(json.dumps({"model": {"lstm_unitz": 16}}))
    with pytest.raises(SettingsError, match="unknown setting 'lstm_unitz'"):
        parse_settings(["--config", str(config)])
    config.write_text(json.dumps({"preprocessing": {"detrend_window": 50}}))
    with pytest.raises(SettingsError, match="detrend_window must be an odd number"):
        parse_settings(["--config", str(config)])


@pytest.mark.parametrize("args, message", [(["--epochs", "0"], "epochs must be a positive integer"),
                                           (["--batch-size", "-1"], "batch_size must be a positive integer"),
                                           (["--seed", "-3"], "--seed -3")])
def test_bad_flag_values_exit_2_with_one_line(args, message):
    result = subprocess.run([sys.executable, str(ROOT / "hybrid_training.py"), *args], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


def _trainer(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "hybrid_training.py"), *args], capture_output=True, text=True,
                          cwd=cwd)


def test_an_explicit_flag_beats_config_which_beats_the_default(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"training": {"epochs": 5, "batch_size": 8}}))
    assert (parse_settings(["--config", str(config)]).training.epochs,
            parse_settings(["--config", str(config)]).training.batch_size) == (5, 8)
    both = parse_settings(["--config", str(config), "--epochs", "7"])
    assert (both.training.epochs, both.training.batch_size) == (7, 8)
    assert parse_settings(["--batch-size", "16"]).training.batch_size == 16
    assert parse_settings([]).training.epochs == 60


@pytest.mark.parametrize("section, values, message", [
    ("training", {"epochs": "5"}, 'epochs = "5": expected an integer'),
    ("training", {"batch_size": 2.5}, "batch_size = 2.5: expected an integer"),
    ("model", {"batch_norm": 1}, "batch_norm = 1: expected true or false"),
    ("model", {"conv_filters": [4, "8"]}, "conv_filters = [4, \"8\"]: item 1: expected an integer"),
    ("model", {"dropout": 1.5}, "dropout must be in [0, 1)"),
    ("preprocessing", {"mask_sigma": "NaN"}, 'mask_sigma = "NaN": expected a number'),
    ("split", {"injected_snr": [10]}, "injected_snr = [10]: expected a list of 2 values"),
    ("synthetic", {"rows": -5}, "rows must be at least 40"),
])
def test_config_values_are_checked_for_type_and_range_naming_the_key(tmp_path, section, values, message):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({section: values}))
    result = _trainer("--config", str(config), "--status", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr and f"[{section}]" in result.stderr


def test_a_non_finite_number_in_config_is_refused(tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"preprocessing": {"mask_sigma": NaN}}')  # Python's json reads NaN
    with pytest.raises(SettingsError, match="mask_sigma = NaN: expected a finite number"):
        parse_settings(["--config", str(config)])


@pytest.mark.parametrize("flags", [["--fresh", "--status"], ["--status", "--predict", "x.csv"],
                                   ["--fresh", "--predict", "x.csv"]])
def test_fresh_status_and_predict_are_mutually_exclusive(tmp_path, flags):
    result = _trainer(*flags, cwd=tmp_path)
    assert result.returncode == 2 and "not allowed with argument" in result.stderr and result.stdout == ""
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "training_full.log").exists()


def test_help_ends_with_examples_and_exit_codes_and_version_prints_one_line():
    from settings import VERSION

    help_text = _trainer("--help").stdout
    examples, codes = help_text.index("examples:"), help_text.index("exit codes:")
    assert examples < codes and help_text.rstrip().endswith("rerun the same command to resume")
    for code in ("0 ", "1 ", "2 ", "130"):
        assert f"\n  {code}" in help_text[codes:]
    version = _trainer("--version")
    assert version.returncode == 0 and version.stdout == f"hybrid_training.py {VERSION}\n"


def test_a_normal_run_prints_only_the_trainers_lines_progress_on_stdout(reference):
    ref, _, _ = reference
    stdout, stderr = (ref / "console.stdout").read_text(), (ref / "console.stderr").read_text()
    assert stderr == ""  # no absl, oneDNN or tf.data start-up lines, no warnings
    for noise in ("absl", "oneDNN", "E0000", "W0000", "I0000", "NodeDef", "use_unbounded_threadpool"):
        assert noise not in stdout
    assert "[1/7] Discovering datasets" in stdout and "[7/7] Evaluating" in stdout


def test_an_unexpected_error_is_one_line_on_the_console_and_a_traceback_in_the_log(tmp_path):
    # A bug stands in for any unexpected failure: stage 1 raises what no handler expects.
    code = ("import sys, hybrid_training\n"
            "def broken(*args):\n    raise RuntimeError('a bug in stage 1')\n"
            "hybrid_training.find_datasets = broken\n"
            "sys.exit(hybrid_training.main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "--data-dir", str(tmp_path / "data"), "--checkpoint-dir",
                             str(tmp_path / "checkpoints"), "--log-file", str(tmp_path / "log.txt")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "INTERNAL ERROR: RuntimeError: a bug in stage 1" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "please report it" in result.stderr
    log = (tmp_path / "log.txt").read_text()
    assert "Traceback (most recent call last)" in log and "in broken\nRuntimeError: a bug in stage 1" in log

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
    assert (settings.training.epochs, settings.training.batch_size, settings.seed) == (100, 32, 42)
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

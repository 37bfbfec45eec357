"""Shared pieces of the benchmarks: machine description, data of a given size, JSON output."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def machine() -> dict:
    import numpy

    info = {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "numpy": numpy.__version__}
    try:
        import keras
        import tensorflow

        info |= {"tensorflow": tensorflow.__version__, "keras": keras.__version__}
    except ImportError:
        pass
    return info


def preprocessed_synthetic(rows: int, seed: int = 42):
    """(x [rows, 3197, 1] float32, y [rows] int8): the built-in generator, preprocessed."""
    from preprocessing import PreprocessingConfig, preprocess
    from synthetic_data import generate_light_curves

    curves = generate_light_curves(rows, seed)
    return preprocess(curves.flux.astype("float32"), PreprocessingConfig()), (curves.label == 2).astype("int8")


def train_and_validation(rows: int):
    """(x_train, y_train, x_val, y_val): ``rows`` training curves and a fifth as many for validation."""
    x, y = preprocessed_synthetic(rows + rows // 5)
    return x[:rows], y[:rows], x[rows:], y[rows:]


def trainer_command(run: Path, data: Path, *args: str) -> list[str]:
    """``hybrid_training.py`` with every folder (and the log) inside ``run``, reading ``data``."""
    return [sys.executable, str(ROOT / "hybrid_training.py"), "--data-dir", str(data),
            "--checkpoint-dir", str(run / "checkpoints"), "--models-dir", str(run / "models"),
            "--results-dir", str(run / "results"), "--log-file", str(run / "log.txt"), *args]


def write_result(name: str, result: dict) -> Path:
    from atomic_io import write_json

    path = ROOT / "results" / "bench" / f"{name}.json"
    write_json(path, result)
    return path

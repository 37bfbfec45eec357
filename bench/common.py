"""Shared pieces of the benchmarks: machine description, data of a given size, JSON output."""

from __future__ import annotations

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


def epoch_clock():
    """A Keras callback whose ``seconds`` lists each epoch's wall time, start to next start.

    Start to start (the last: to the end of training) counts everything an epoch costs:
    training, validation, every callback, and any input-pipeline set-up or teardown between.
    """
    import time

    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.starts, self.seconds = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self._tick()

        def on_train_end(self, logs=None):
            self._tick()

        def _tick(self):
            now = time.perf_counter()
            if self.starts:
                self.seconds.append(now - self.starts[-1])
            self.starts.append(now)

    return EpochClock()


def trainer_command(run: Path, data: Path, *args: str) -> list[str]:
    """``hybrid_training.py`` with every folder (and the log) inside ``run``, reading ``data``."""
    return [sys.executable, str(ROOT / "hybrid_training.py"), "--data-dir", str(data),
            "--checkpoint-dir", str(run / "checkpoints"), "--models-dir", str(run / "models"),
            "--results-dir", str(run / "results"), "--log-file", str(run / "log.txt"), *args]


def whole_epochs(settings: dict) -> dict:
    """Trainer settings (``--config``) with every training curve read every epoch, unless they set
    ``training.epoch_parts`` themselves: on the built-in generator's data an epoch is otherwise a
    third of them (``TrainingConfig.epoch_parts`` null), and a time per epoch would not count
    every curve.

    >>> whole_epochs({"training": {"early_stopping_patience": 0}})
    {'training': {'epoch_parts': 1, 'early_stopping_patience': 0}}
    """
    return settings | {"training": {"epoch_parts": 1} | settings.get("training", {})}


def write_result(name: str, result: dict) -> Path:
    from atomic_io import write_json

    path = ROOT / "results" / "bench" / f"{name}.json"
    write_json(path, result)
    return path

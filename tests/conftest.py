"""Shared helpers: tiny CSV files, a tiny run configuration, and the trainer as a subprocess."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    """Start the install resolutions (a minute or two of waiting on the package index) as the
    session starts, so that they overlap the tests that run before the install tests.

    With pytest-xdist here, in the controller, before its workers start: they inherit the
    folder the results go to (``test_install.RESOLUTIONS_ENV``), so whichever worker runs the
    install tests reads them; before, that worker started them itself and waited two minutes.
    Only when the tests asked for include tests/test_install.py and no -k or -m picks among them
    (the controller cannot tell whether it picks the install tests; their fixture then starts
    the dry runs in the worker that runs them)."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    if config.getoption("keyword", "") or config.getoption("markexpr", ""):
        return
    if any(_includes_install_tests(config.invocation_params.dir / arg.split("::")[0]) for arg in config.args):
        _start_resolutions()


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (minutes each; bench/run_all.py runs them)")


def pytest_collection_modifyitems(session, config, items):
    """Skip the tests marked slow, unless --run-slow. Without pytest-xdist: start the install
    resolutions as soon as the tests are collected."""
    if not config.getoption("--run-slow"):
        skip = pytest.mark.skip(reason="slow: python3 -m pytest -q --run-slow -m slow (bench/run_all.py runs it)")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
    if hasattr(config, "workerinput") or config.getoption("numprocesses", None):
        return
    if any(item.nodeid.split("::")[0].endswith("test_install.py") and "test_requirements_resolve" in item.nodeid
           for item in items):
        _start_resolutions()


def _includes_install_tests(path: Path) -> bool:
    path, install = path.resolve(), ROOT / "tests" / "test_install.py"
    return path == install or path in install.parents


def _start_resolutions() -> None:
    import atexit
    import tempfile

    import test_install

    workdir = Path(tempfile.mkdtemp(prefix="pytest-install-"))
    # Registered before start_resolutions' own exit handler, so run after it (exit handlers run
    # last in, first out): the folder goes once its dry runs are killed.
    atexit.register(shutil.rmtree, workdir, True)
    test_install.start_resolutions(workdir)


# A run small enough for seconds: short curves, a tiny network, no early stopping. The built-in
# curves (3197 values) are read as if 1.17 minutes apart, so that 25 values average into each
# 29.4-minute grid point and a curve makes one window of 128 points instead of 25 windows. Two
# detrending windows, as a default run has: 21 cadences and (by default) 1.5 times that, 31.
TINY_CONFIG = {
    "synthetic": {"rows": 240, "positive_fraction": 0.1, "completeness_rows": 0},
    "preprocessing": {"sequence_length": 128, "detrend_window": 21, "row_cadence_minutes": 1.1723},
    "split": {"augment_copies": 1, "injected_fraction": 0.25, "injected_binary_fraction": 0.1},
    "model": {"conv_filters": [4, 8], "kernel_size": 5, "pool_size": 4, "lstm_units": 8, "dense_units": 8},
    "training": {"early_stopping_patience": 0},
}


def write_csv(path: Path, labels, flux, header: list[str] | None = None) -> Path:
    """A Kaggle-layout CSV: LABEL then FLUX.1..N (or a given header)."""
    flux = np.asarray(flux, dtype=float)
    header = header or ["LABEL"] + [f"FLUX.{i}" for i in range(1, flux.shape[1] + 1)]
    lines = [",".join(header)]
    for label, row in zip(labels, flux):
        lines.append(",".join([str(label)] + ["" if np.isnan(v) else repr(float(v)) for v in row]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def random_curves(rows: int, length: int, hosts: int, seed: int = 0):
    """Labels (2/1) and noisy flux with a box dip in each host's curve."""
    rng = np.random.default_rng(seed)
    flux = 1000.0 + rng.normal(0.0, 1.0, (rows, length))
    labels = np.array([2] * hosts + [1] * (rows - hosts))
    flux[:hosts, length // 3: length // 3 + 5] -= 8.0
    return labels, flux


def read_cache(workdir: Path, name: str) -> np.ndarray:
    """One array of a run's cached split (``checkpoints/training_data.npz`` or the array file it names)."""
    index_file = workdir / "checkpoints" / "training_data.npz"
    with np.load(index_file, allow_pickle=False) as index:
        if name in index.files:
            return index[name]
        file = json.loads(str(index["arrays"]))[name]
    return np.load(index_file.with_name(file), allow_pickle=False)


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


def made_once(tmp_path_factory, name: str, make) -> tuple[Path, dict]:
    """A folder that ``make(folder)`` fills, once per test session, and the JSON record it returns.

    With pytest-xdist every worker process would make its own session fixtures; these are
    made by the first worker that asks, under a lock in the folder the workers' temporary
    folders share, and read by the others (pytest-xdist's recipe for session fixtures). The
    reference run is the costly one: one of them instead of one per worker."""
    from atomic_io import _try_lock  # the checkpoint folder's lock: POSIX and Windows

    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        return folder, make(folder)
    shared = tmp_path_factory.getbasetemp().parent
    folder, record = shared / name, shared / f"{name}.json"
    with open(shared / f"{name}.lock", "a+") as lock:
        while not _try_lock(lock):  # another worker is making it
            time.sleep(0.1)
        if not record.exists():  # none made yet, or the worker making it failed: (re)make it
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            record.write_text(json.dumps(make(folder)))
    return folder, json.loads(record.read_text())


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small labelled data set (from the built-in generator) shared by the training tests."""
    from synthetic_data import SyntheticConfig, write_synthetic_dataset

    def make(folder):
        write_synthetic_dataset(folder, SyntheticConfig(**TINY_CONFIG["synthetic"]), seed=7)
        return {}

    return made_once(tmp_path_factory, "tiny_data", make)[0]


def trainer_env() -> dict:
    env = dict(os.environ)
    env.pop("HYBRID_TRAINING_CRASH_AT", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def trainer_command(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "hybrid_training.py"),
            "--data-dir", str(workdir / "data"), "--checkpoint-dir", str(workdir / "checkpoints"),
            "--models-dir", str(workdir / "models"), "--results-dir", str(workdir / "results"),
            "--log-file", str(workdir / "training_full.log"), *args]


def run_trainer(workdir: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run hybrid_training.py on ``workdir``'s folders; returns the finished process (text output)."""
    return subprocess.run(trainer_command(workdir, *args), cwd=workdir, env=env or trainer_env(),
                          capture_output=True, text=True, timeout=timeout)


def make_workdir(tmp_path: Path, data: Path | None = None) -> Path:
    """A run folder; ``data`` (a folder of CSVs) is copied in as its data folder."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    if data is not None:
        shutil.copytree(data, workdir / "data")
    return workdir


# Epochs of the reference run, the uninterrupted run every resumed run is compared with.
EPOCHS = 6


def checkpoint_arrays(path):
    """Every array in a .keras file's weights (model weights and optimizer variables)."""
    with zipfile.ZipFile(path) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            arrays = {}
            weights.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                               if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_same_run(workdir, reference):
    got = checkpoint_arrays(workdir / "checkpoints" / "model_checkpoint.keras")
    want = checkpoint_arrays(reference / "checkpoints" / "model_checkpoint.keras")
    assert got.keys() == want.keys() and len(got) > 10
    different = [name for name in want if not np.array_equal(got[name], want[name])]
    assert not different, f"arrays differ from the uninterrupted run: {different[:5]}"
    assert (checkpoint_arrays(workdir / "models" / "exoplanet_cnn_lstm.keras").keys()
            == checkpoint_arrays(reference / "models" / "exoplanet_cnn_lstm.keras").keys())
    with np.load(workdir / "checkpoints" / "history.npz") as a, np.load(reference / "checkpoints" / "history.npz") as b:
        metrics = [k for k in b.files if k not in ("epoch_seconds", "resumed_after")]
        assert len(metrics) >= 12 and set(metrics) <= set(a.files)
        for name in metrics:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="session")
def reference(tiny_data, tmp_path_factory):
    """The uninterrupted run of EPOCHS epochs (and its wall time). Tests read it, never write in it."""
    def make(workdir):
        config = workdir / "tiny.json"
        config.write_text(json.dumps(TINY_CONFIG))
        shutil.copytree(tiny_data, workdir / "data")
        started = time.monotonic()
        result = run_trainer(workdir, "--config", str(config), "--epochs", str(EPOCHS))
        assert result.returncode == 0, result.stdout + result.stderr
        # What the user's console showed, for the start-up and output-stream tests.
        (workdir / "console.stdout").write_text(result.stdout)
        (workdir / "console.stderr").write_text(result.stderr)
        assert "No checkpoint found - starting fresh training" in result.stdout
        assert f"Starting from epoch: 1/{EPOCHS}" in result.stdout
        return {"seconds": time.monotonic() - started}

    workdir, record = made_once(tmp_path_factory, "reference", make)
    return workdir, workdir / "tiny.json", record["seconds"]



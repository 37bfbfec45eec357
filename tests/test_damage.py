"""Every saved file, damaged every way a disk, a crash or a person can damage it.

Files: the checkpoint set (model_checkpoint.keras, model_checkpoint.previous.keras, the set's
copy of the best model, last_epoch.txt, history.npz, training_state.json), the cached split
(training_data.npz) and models/ (the best model, preprocessor_hybrid.json, threshold.json).
Damage: missing, empty, truncated, random bytes (not UTF-8), a valid file of the wrong kind, a
folder in its place, a dangling link; and unreadable, in the real runs at the end (a root user
reads any file, so there the run drops that privilege).

The rules: resume from the newest intact state and say what was lost; text never crashes the
run; a lost best model is restored or replaced, never a traceback; a refusal changes no file.
The in-process cases use the real store and a real (tiny) Keras model on real files; the last
tests are real training runs in subprocesses.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from checkpoint_callback import CheckpointError, CheckpointMismatch, CheckpointStore, TrainingState, \
    read_state_from_model_file
from conftest import EPOCHS, TINY_CONFIG, assert_same_run, run_trainer, write_csv

DAMAGES = ["missing", "empty", "truncated", "random_bytes", "wrong_kind", "folder", "dangling_link"]
FINGERPRINT = {"seed": 1, "model": "tiny"}
BEST_EPOCH = 2  # the template's val_auc peaks at epoch 2 of 3


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO)


def _tiny_model():
    import keras

    from model import ModelConfig, build_model
    from preprocessing import PreprocessingConfig

    keras.utils.set_random_seed(0)
    preprocessing = PreprocessingConfig(**TINY_CONFIG["preprocessing"])
    return build_model(ModelConfig(**TINY_CONFIG["model"]), sequence_length=preprocessing.sequence_length,
                       channels=preprocessing.channels)


def _save_run(folder, models, epochs, fingerprint, val_auc=(0.6, 0.8, 0.7, 0.75)):
    """Save ``epochs`` epochs of a real (tiny) model into ``folder``, the best one into ``models``."""
    store = CheckpointStore(folder)
    model = _tiny_model()
    state = TrainingState(fingerprint=fingerprint)
    for epoch in range(1, epochs + 1):
        improved = state.record_epoch(epoch, {"loss": 1.0 / epoch, "val_auc": val_auc[epoch - 1]}, 0.5)
        store.save(model, state, models / "best.keras" if improved else None)
    return store, state, model


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A checkpoint set of 3 epochs (best: epoch 2), another run's set, and the models folder."""
    from preprocessing import PreprocessingConfig
    import atomic_io

    root = tmp_path_factory.mktemp("template")
    _save_run(root / "checkpoints", root / "models", 3, FINGERPRINT)
    _save_run(root / "other_checkpoints", root / "other_models", 1, {"seed": 99, "model": "other"})
    config = PreprocessingConfig(**TINY_CONFIG["preprocessing"])
    atomic_io.write_json(root / "models" / "preprocessor_hybrid.json", {"preprocessing": config.to_json()})
    atomic_io.write_json(root / "models" / "threshold.json", {"threshold": 0.4})
    return root


def _copy(template, tmp_path):
    shutil.copytree(template, tmp_path / "run", symlinks=True)
    return tmp_path / "run"


def damage(path, kind, wrong_kind_bytes: bytes):
    """Damage ``path`` in place, the way ``kind`` says."""
    original = path.read_bytes()
    path.unlink()  # every kind starts from nothing in the file's place
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(original[: max(1, len(original) // 3)] if len(original) > 3 else b"")
    elif kind == "random_bytes":
        noise = np.random.default_rng(len(original)).integers(128, 256, max(len(original), 64), dtype=np.uint8)
        path.write_bytes(noise.tobytes())  # bytes >= 0x80: not ASCII, not UTF-8
    elif kind == "wrong_kind":
        path.write_bytes(wrong_kind_bytes)
    elif kind == "folder":
        path.mkdir()
        (path / "something.txt").write_text("a person's file\n")
    elif kind == "dangling_link":
        path.symlink_to(path.parent / "nowhere" / path.name)


def _wrong_kind(run, name: str) -> bytes:
    """A valid file of another kind: another run's .keras, a JSON where an npz belongs, an npz
    where text belongs."""
    if name.endswith(".keras"):
        return (run / "other_checkpoints" / "model_checkpoint.keras").read_bytes()
    if name.endswith(".npz"):
        return (run / "checkpoints" / "training_state.json").read_bytes()
    return (run / "checkpoints" / "history.npz").read_bytes()


SET_FILES = ["model_checkpoint.keras", "model_checkpoint.previous.keras", "best_model.keras", "last_epoch.txt",
             "history.npz", "training_state.json"]


@pytest.mark.parametrize("kind", DAMAGES)
@pytest.mark.parametrize("name", SET_FILES)
def test_each_checkpoint_file_each_damage_resumes_from_the_newest_intact_state(template, tmp_path, caplog, name,
                                                                               kind):
    run = _copy(template, tmp_path)
    store = CheckpointStore(run / "checkpoints")
    damage(run / "checkpoints" / name, kind, _wrong_kind(run, name))
    path, state = store.restore(FINGERPRINT)
    newest_lost = name == "model_checkpoint.keras"
    assert state.epoch == (2 if newest_lost else 3) and path == store.model_file
    if newest_lost:
        # One line names the file, says what happened and which epoch is lost.
        line = next(r.getMessage() for r in caplog.records if "model_checkpoint.keras" in r.getMessage())
        assert ("is missing" if kind == "missing" else "is unusable") in line
        assert "resuming from model_checkpoint.previous.keras (epoch 2): epoch 3 is lost" in line
        assert "edited or stale" not in caplog.text and "does not match" not in caplog.text
    assert all("\n" not in r.getMessage() for r in caplog.records)
    # The views follow the checkpoint actually used, whatever was in their place.
    assert store.last_epoch_file.read_text() == f"{state.epoch}\n"
    with np.load(store.history_file, allow_pickle=False) as history:
        assert history["epoch"].tolist() == list(range(1, state.epoch + 1))
    assert json.loads(store.state_file.read_text())["epoch"] == state.epoch
    # And the set goes on: the next epoch, a new best, saves and restores.
    assert state.record_epoch(state.epoch + 1, {"loss": 0.1, "val_auc": 0.99}, 0.5)
    store.save(_tiny_model(), state, run / "models" / "best.keras")
    assert store.restore(FINGERPRINT)[1].epoch == state.epoch
    assert read_state_from_model_file(store.best_file).epoch == state.epoch
    if kind == "folder":  # a person's folder is moved aside, never deleted
        assert (run / "checkpoints" / f"{name}.damaged" / "something.txt").exists()


def test_a_checkpoint_truncated_at_any_length_is_detected(template, tmp_path):
    from checkpoint_callback import CheckpointDamaged

    run = _copy(template, tmp_path)
    store = CheckpointStore(run / "checkpoints")
    original = store.model_file.read_bytes()
    for length in np.unique(np.linspace(0, len(original) - 1, 60).astype(int)):
        store.model_file.write_bytes(original[:length])
        with pytest.raises(CheckpointDamaged):
            read_state_from_model_file(store.model_file)
    assert store.restore(FINGERPRINT)[1].epoch == 2


@pytest.mark.parametrize("pair", [("model_checkpoint.keras", "history.npz"),
                                  ("model_checkpoint.previous.keras", "last_epoch.txt")])
def test_two_damaged_files_at_once(template, tmp_path, caplog, pair):
    run = _copy(template, tmp_path)
    store = CheckpointStore(run / "checkpoints")
    damage(run / "checkpoints" / pair[0], "random_bytes", b"")
    damage(run / "checkpoints" / pair[1], "folder", b"")
    _, state = store.restore(FINGERPRINT)
    assert state.epoch == (2 if pair[0] == "model_checkpoint.keras" else 3)
    assert store.last_epoch_file.read_text() == f"{state.epoch}\n"
    assert "is unusable" in caplog.text and pair[0] in caplog.text


def _snapshot(folder):
    return {p.relative_to(folder): (p.read_bytes() if p.is_file() and not p.is_symlink() else str(p.is_dir()))
            for p in sorted(folder.rglob("*")) if p.name != ".lock"}


@pytest.mark.parametrize("kinds", [("random_bytes", "truncated"), ("missing", "folder"), ("empty", "dangling_link")])
def test_no_usable_checkpoint_is_a_refusal_that_changes_nothing(template, tmp_path, kinds):
    run = _copy(template, tmp_path)
    store = CheckpointStore(run / "checkpoints")
    damage(store.model_file, kinds[0], b"")
    damage(store.previous_file, kinds[1], b"")
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match="cannot be used.*--fresh") as error:
        store.restore(FINGERPRINT)
    assert "\n" not in str(error.value) and str(store.folder) in str(error.value)
    assert _snapshot(run) == before


def test_another_runs_checkpoint_in_place_of_the_newest_is_set_aside_but_other_settings_refuse(template, tmp_path,
                                                                                               caplog):
    run = _copy(template, tmp_path)
    store = CheckpointStore(run / "checkpoints")
    before = _snapshot(run)
    with pytest.raises(CheckpointMismatch, match="other settings: model tiny -> changed"):
        store.restore({"seed": 1, "model": "changed"})  # the user changed a setting: refuse, change nothing
    assert _snapshot(run) == before
    shutil.copyfile(run / "other_checkpoints" / "model_checkpoint.keras", store.model_file)
    _, state = store.restore(FINGERPRINT)
    assert state.epoch == 2 and "made by another run" in caplog.text


@pytest.mark.parametrize("kind", DAMAGES + ["last_epoch_instead"])
def test_a_lost_or_damaged_best_model_is_restored_from_the_checkpoint_set(template, tmp_path, caplog, kind):
    run = _copy(template, tmp_path)
    store = CheckpointStore(run / "checkpoints")
    best = run / "models" / "best.keras"
    if kind == "last_epoch_instead":
        shutil.copyfile(store.model_file, best)  # a valid model, but of epoch 3
    else:
        damage(best, kind, _wrong_kind(run, "best.keras"))
    _, state = store.restore(FINGERPRINT)
    assert store.recover_best_model(state, best) == best
    assert read_state_from_model_file(best).epoch == BEST_EPOCH
    assert f"restored the best model (epoch {BEST_EPOCH})" in caplog.text and str(best) in caplog.text


def test_with_every_copy_of_the_best_model_gone_the_last_checkpoint_stands_in(template, tmp_path, caplog):
    run = _copy(template, tmp_path)
    store = CheckpointStore(run / "checkpoints")
    _, state = store.restore(FINGERPRINT)
    for path in (run / "models" / "best.keras", store.best_file, store.previous_file):
        damage(path, "random_bytes", b"")
    state.best_epoch = 1  # no checkpoint holds it any more
    best = store.recover_best_model(state, run / "models" / "best.keras")
    assert read_state_from_model_file(best).epoch == 3
    assert "the best weights of epoch 1 are lost" in caplog.text and "epoch 3" in caplog.text


@pytest.mark.parametrize("kind", DAMAGES)
def test_each_damage_of_the_cached_split_rebuilds_it(tmp_path, caplog, kind):
    import data_cache
    from augmentation import Split

    splits = {name: Split(flux=np.zeros((4, 8, 1), np.float32), label=np.array([0, 1, 0, 1], np.int8),
                          index=np.arange(4), augmented=np.zeros(4, bool)) for name in ("train", "val", "test")}
    data = data_cache.TrainingData(splits=splits, raw_test=np.zeros((4, 8), np.float32),
                                   source_test=np.zeros(4, np.int32), line_test=np.arange(4) + 2, files=["a.csv"],
                                   file_rows=[12], fingerprint={"seed": 1})
    path = tmp_path / "training_data.npz"
    data_cache.save(path, data)
    damage(path, kind, b'{"epoch": 3}')
    assert data_cache.load(path, {"seed": 1}) is None
    assert data_cache.known_row_counts(path) == {}
    data_cache.save(path, data)  # the rebuilt cache is written, whatever was in its place
    assert data_cache.load(path, {"seed": 1}) is not None


def _predict_settings(run, *targets):
    from settings import parse_settings

    return parse_settings(["--checkpoint-dir", str(run / "checkpoints"), "--models-dir", str(run / "models"),
                           "--results-dir", str(run / "results"), "--predict", *map(str, targets)])


@pytest.fixture
def predict_run(template, tmp_path):
    run = _copy(template, tmp_path)
    shutil.copyfile(run / "models" / "best.keras", run / "models" / "exoplanet_cnn_lstm.keras")
    rng = np.random.default_rng(3)
    curves = write_csv(run / "new.csv", [2, 1, 1], 100 + rng.normal(size=(3, 128)))
    return run, curves


@pytest.mark.parametrize("kind", DAMAGES)
def test_predict_with_a_damaged_best_model_restores_it_from_the_checkpoint(predict_run, caplog, kind):
    import evaluation

    run, curves = predict_run
    best = run / "models" / "exoplanet_cnn_lstm.keras"
    damage(best, kind, _wrong_kind(run, "x.keras"))  # wrong kind: another run's model, told by its settings
    output = evaluation.predict(_predict_settings(run, curves))
    assert len(output.read_text().splitlines()) == 4
    assert read_state_from_model_file(best).epoch == BEST_EPOCH and "restored the best model" in caplog.text


@pytest.mark.parametrize("kind", DAMAGES)
def test_predict_with_damaged_preprocessing_settings_is_a_one_line_error(predict_run, kind):
    import evaluation

    run, curves = predict_run
    preprocessor = run / "models" / "preprocessor_hybrid.json"
    damage(preprocessor, kind, _wrong_kind(run, "x.json"))
    before = _snapshot(run)
    with pytest.raises(evaluation.NoModelError) as error:
        evaluation.predict(_predict_settings(run, curves))
    message = str(error.value)
    assert "\n" not in message and str(preprocessor) in message
    assert ("train one first" if kind == "missing" else "rewrites this file") in message
    assert _snapshot(run) == before


def test_predict_with_settings_of_another_run_names_both_files(predict_run):
    """One channel in the settings, two in the model (a 1.8 settings file beside a 1.9 model)."""
    import evaluation

    run, curves = predict_run
    preprocessor = run / "models" / "preprocessor_hybrid.json"
    settings = json.loads(preprocessor.read_text())
    settings["preprocessing"]["extra_detrend_windows"] = []
    preprocessor.write_text(json.dumps(settings))
    before = _snapshot(run)
    with pytest.raises(evaluation.NoModelError) as error:
        evaluation.predict(_predict_settings(run, curves))
    message = str(error.value)
    assert "\n" not in message and str(preprocessor) in message and "exoplanet_cnn_lstm.keras" in message
    assert "in 2 channel(s)" in message and "makes 128 in 1" in message and "different runs" in message
    assert _snapshot(run) == before


@pytest.mark.parametrize("kind", DAMAGES)
def test_predict_with_a_damaged_threshold_uses_one_half_and_says_so(predict_run, caplog, kind):
    import evaluation

    run, curves = predict_run
    threshold = run / "models" / "threshold.json"
    damage(threshold, kind, _wrong_kind(run, "x.json"))
    evaluation.predict(_predict_settings(run, curves))
    assert "using threshold 0.5" in caplog.text and str(threshold) in caplog.text


# -- real runs: the trainer as a subprocess on a copy of the reference run --------------------------------


def _copy_reference(reference, tmp_path):
    ref, config, _ = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run, symlinks=True, ignore=shutil.ignore_patterns(".lock", "console.*"))
    return run, config


def _unprivileged() -> list[str]:
    """A command prefix under which chmod 000 makes a file unreadable (root reads anything)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable to this process")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


@pytest.mark.parametrize("kind", ["missing", "unreadable"])
def test_real_rerun_without_the_newest_checkpoint_retrains_the_lost_epoch_bit_for_bit(reference, tmp_path, kind):
    run, config = _copy_reference(reference, tmp_path)
    newest = run / "checkpoints" / "model_checkpoint.keras"
    prefix = []
    if kind == "missing":
        newest.unlink()
    else:
        prefix = _unprivileged()
        newest.chmod(0)
    from conftest import trainer_command, trainer_env

    result = subprocess.run(prefix + trainer_command(run, "--config", str(config), "--epochs", str(EPOCHS)),
                            cwd=run, env=trainer_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    warning = [line for line in result.stderr.splitlines() if "model_checkpoint.keras" in line]
    assert len(warning) == 1, result.stderr
    assert ("is missing" if kind == "missing" else "Permission denied") in warning[0]
    assert f"epoch {EPOCHS} is lost and will be trained again" in warning[0]
    assert "edited or stale" not in result.stderr + result.stdout
    assert warning[0] in (run / "training_full.log").read_text()  # the log file keeps warnings too
    assert f"Starting from epoch: {EPOCHS}/{EPOCHS}" in result.stdout and "[7/7] Evaluating" in result.stdout
    assert_same_run(run, reference[0])


def test_real_rerun_with_the_best_model_lost_and_last_epoch_garbled_evaluates(reference, tmp_path):
    run, config = _copy_reference(reference, tmp_path)
    (run / "models" / "exoplanet_cnn_lstm.keras").unlink()
    (run / "checkpoints" / "last_epoch.txt").write_bytes(b"\xff\xfe\x00garbage\x80")
    result = run_trainer(run, "--config", str(config), "--epochs", str(EPOCHS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "last_epoch.txt is empty or damaged" in result.stdout
    assert "exoplanet_cnn_lstm.keras: it is missing - restored the best model" in result.stderr
    assert "Training already finished" in result.stdout and (run / "results" / "metrics.json").exists()
    assert (run / "checkpoints" / "last_epoch.txt").read_text() == f"{EPOCHS}\n"


def test_real_refusal_is_one_line_exit_2_and_every_file_keeps_its_bytes(reference, tmp_path):
    run, config = _copy_reference(reference, tmp_path)
    for name in ("model_checkpoint.keras", "model_checkpoint.previous.keras"):
        path = run / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:100])
    before = _snapshot(run)
    result = run_trainer(run, "--config", str(config), "--epochs", str(EPOCHS + 1))
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR:") and "--fresh" in errors[0]
    after = _snapshot(run)
    assert {k: v for k, v in after.items() if k.name != "training_full.log"} == \
        {k: v for k, v in before.items() if k.name != "training_full.log"}


UNREADABLE_SCRIPT = r'''
import json, logging, shutil, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
template, work = Path(sys.argv[2]), Path(sys.argv[3])
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from checkpoint_callback import CheckpointStore, read_state_from_model_file
import data_cache, evaluation
from settings import parse_settings

def make_unreadable(path):
    path.chmod(0)
    try:
        path.read_bytes()
        raise SystemExit("this process can still read a chmod 000 file")
    except PermissionError:
        pass

def fresh(name, path):
    run = work / name
    shutil.copytree(template, run, symlinks=True)
    make_unreadable(run / path)
    return run

outcome = {}
for name in SET_FILES:
    run = fresh(name, "checkpoints/" + name)
    _, state = CheckpointStore(run / "checkpoints").restore(FINGERPRINT)
    outcome[name] = {"epoch": state.epoch,
                     "last_epoch": (run / "checkpoints" / "last_epoch.txt").read_text()}
run = work / "cache"
shutil.copytree(template, run, symlinks=True)
shutil.copyfile(run / "checkpoints" / "history.npz", run / "cache.npz")  # a valid npz, unreadable
make_unreadable(run / "cache.npz")
outcome["training_data.npz"] = {"loaded": data_cache.load(run / "cache.npz", {}) is not None,
                                "rows": data_cache.known_row_counts(run / "cache.npz")}
for name in ("exoplanet_cnn_lstm.keras", "preprocessor_hybrid.json", "threshold.json"):
    run = work / name
    shutil.copytree(template, run, symlinks=True)
    shutil.copyfile(run / "models" / "best.keras", run / "models" / "exoplanet_cnn_lstm.keras")
    (run / "models" / name).chmod(0)
    settings = parse_settings(["--checkpoint-dir", str(run / "checkpoints"), "--models-dir", str(run / "models"),
                               "--results-dir", str(run / "results"), "--predict", sys.argv[4]])
    try:
        evaluation.predict(settings)
        outcome[name] = {"predicted": True,
                         "best_epoch": read_state_from_model_file(run / "models" / "exoplanet_cnn_lstm.keras").epoch}
    except evaluation.NoModelError as error:
        outcome[name] = {"predicted": False, "error": str(error)}
print("OUTCOME " + json.dumps(outcome))
'''


def test_unreadable_files_in_a_process_that_cannot_read_them(template, tmp_path):
    script = tmp_path / "unreadable.py"
    script.write_text(f"SET_FILES = {SET_FILES!r}\nFINGERPRINT = {FINGERPRINT!r}\n" + UNREADABLE_SCRIPT)
    curves = write_csv(tmp_path / "new.csv", [2, 1], 100 + np.random.default_rng(1).normal(size=(2, 128)))
    (tmp_path / "work").mkdir()
    from conftest import ROOT

    result = subprocess.run(_unprivileged() + [sys.executable, str(script), str(ROOT), str(template),
                                               str(tmp_path / "work"), str(curves)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    outcome = json.loads(result.stdout.split("OUTCOME ", 1)[1])
    for name in SET_FILES:
        epoch = 2 if name == "model_checkpoint.keras" else 3
        assert outcome[name] == {"epoch": epoch, "last_epoch": f"{epoch}\n"}, name
    assert "model_checkpoint.keras is unusable (it cannot be read (Permission denied))" in result.stdout
    assert "last_epoch.txt cannot be read (Permission denied)" in result.stdout
    assert outcome["training_data.npz"] == {"loaded": False, "rows": {}}
    assert outcome["exoplanet_cnn_lstm.keras"] == {"predicted": True, "best_epoch": BEST_EPOCH}
    assert outcome["threshold.json"] == {"predicted": True, "best_epoch": BEST_EPOCH}
    assert "threshold.json is damaged" in result.stdout and "using threshold 0.5" in result.stdout
    assert not outcome["preprocessor_hybrid.json"]["predicted"]
    assert "Permission denied" in outcome["preprocessor_hybrid.json"]["error"]

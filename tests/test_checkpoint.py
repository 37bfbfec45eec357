"""The checkpoint store on its own, in-process, with a real (tiny) Keras model and real files."""

import json
import logging
import math

import numpy as np
import pytest

from checkpoint_callback import CheckpointError, CheckpointStore, TrainingState, read_state_from_model_file
from checkpoint_callback import check_disk_space


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO)


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 1))
    x = keras.layers.Conv1D(2, 3)(inputs)
    x = keras.layers.GlobalMaxPooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def _state_after(epochs: int) -> TrainingState:
    state = TrainingState(fingerprint={"seed": 1})
    for epoch in range(1, epochs + 1):
        state.record_epoch(epoch, {"loss": 1.0 / epoch, "val_auc": 0.5 + 0.1 * epoch}, seconds=0.5)
    return state


def _save_epochs(store, model, epochs):
    state = TrainingState(fingerprint={"seed": 1})
    for epoch in range(1, epochs + 1):
        state.record_epoch(epoch, {"loss": 1.0 / epoch, "val_auc": 0.5 + 0.1 * epoch}, seconds=0.5)
        store.save(model, state)
    return state


def test_save_writes_the_set_and_restore_reads_it_back(tmp_path, model):
    store = CheckpointStore(tmp_path)
    _save_epochs(store, model, 3)
    assert store.last_epoch_file.read_text() == "3\n"
    assert read_state_from_model_file(store.previous_file).epoch == 2
    with np.load(store.history_file, allow_pickle=False) as history:
        np.testing.assert_allclose(history["loss"], [1.0, 0.5, 1.0 / 3])
        assert history["epoch"].tolist() == [1, 2, 3]
    assert json.loads(store.state_file.read_text())["best_epoch"] == 3
    path, state = store.restore()
    assert path == store.model_file and state.epoch == 3 and state.best_value == pytest.approx(0.8)


def test_best_model_is_a_copy_of_its_epochs_checkpoint(tmp_path, model):
    store = CheckpointStore(tmp_path / "checkpoints")
    best = tmp_path / "models" / "best.keras"
    state = _state_after(1)
    store.save(model, state, best)
    assert best.read_bytes() == store.model_file.read_bytes()
    state.record_epoch(2, {"loss": 0.4, "val_auc": 0.1}, 0.5)  # worse: best stays at epoch 1
    store.save(model, state, None)
    assert read_state_from_model_file(best).epoch == 1


def test_record_epoch_tracks_best_and_rejects_gaps():
    state = TrainingState()
    assert state.record_epoch(1, {"val_auc": 0.7}, 1.0)
    assert not state.record_epoch(2, {"val_auc": 0.6}, 1.0)
    assert state.best_epoch == 1
    with pytest.raises(ValueError):
        state.record_epoch(4, {"val_auc": 0.9}, 1.0)
    assert not state.record_epoch(3, {"val_auc": math.nan}, 1.0)


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "delete"])
def test_damaged_newest_model_file_falls_back_to_the_previous_set(tmp_path, model, damage, caplog):
    store = CheckpointStore(tmp_path)
    _save_epochs(store, model, 3)
    data = store.model_file.read_bytes()
    if damage == "truncate":
        store.model_file.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        store.model_file.write_bytes(b"")
    elif damage == "garbage":
        store.model_file.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8)))
    else:
        store.model_file.unlink()
    path, state = store.restore()
    assert state.epoch == 2 and path == store.model_file
    assert store.last_epoch_file.read_text() == "2\n"  # the views follow the checkpoint actually used
    if damage != "delete":
        assert "is unusable" in caplog.text and (tmp_path / "model_checkpoint.keras.damaged").exists()


def test_no_usable_checkpoint_is_a_clear_error_not_a_fresh_start(tmp_path, model):
    store = CheckpointStore(tmp_path)
    _save_epochs(store, model, 2)
    store.model_file.write_bytes(b"garbage")
    store.previous_file.write_bytes(b"")
    with pytest.raises(CheckpointError, match="cannot be used.*--fresh"):
        store.restore()
    for path in (store.model_file, store.previous_file):
        path.unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="model_checkpoint.keras is missing"):
        store.restore()  # last_epoch.txt and history.npz say training happened


def test_a_corrupted_member_inside_the_zip_is_detected(tmp_path, model):
    store = CheckpointStore(tmp_path)
    _save_epochs(store, model, 2)
    data = bytearray(store.model_file.read_bytes())
    weights_at = data.find(b"model.weights.h5") + 200
    data[weights_at] ^= 0xFF  # one flipped byte inside the weights
    store.model_file.write_bytes(bytes(data))
    path, state = store.restore()
    assert state.epoch == 1


@pytest.mark.parametrize("content, message", [(None, "last_epoch.txt is missing"), ("", "is empty or damaged"),
                                              ("abc\n", "is empty or damaged")])
def test_unreadable_last_epoch_is_recovered_from_the_checkpoint(tmp_path, model, caplog, content, message):
    store = CheckpointStore(tmp_path)
    _save_epochs(store, model, 3)
    store.last_epoch_file.unlink()
    if content is not None:
        store.last_epoch_file.write_text(content)
    _, state = store.restore()
    assert state.epoch == 3 and store.last_epoch_file.read_text() == "3\n"
    assert message in caplog.text and "recovered from the checkpoint itself" in caplog.text


def test_edited_last_epoch_warns_and_keeps_the_true_epoch(tmp_path, model, caplog):
    store = CheckpointStore(tmp_path)
    _save_epochs(store, model, 3)
    store.last_epoch_file.write_text("50\n")
    _, state = store.restore()
    assert state.epoch == 3 and store.last_epoch_file.read_text() == "3\n"
    assert "says epoch 50, but the checkpoint holds epoch 3" in caplog.text


def test_deleted_or_damaged_history_is_rebuilt(tmp_path, model):
    store = CheckpointStore(tmp_path)
    _save_epochs(store, model, 3)
    store.history_file.write_bytes(b"not an npz")
    store.state_file.unlink()
    store.restore()
    with np.load(store.history_file, allow_pickle=False) as history:
        assert history["epoch"].tolist() == [1, 2, 3]
    assert json.loads(store.state_file.read_text())["epoch"] == 3


class _FailingModel:
    """Writes half a file and then fails like a full disk: the file system's failure, not Keras'."""

    def save(self, path):
        with open(path, "wb") as handle:
            handle.write(b"PK partial")
        raise OSError(28, "No space left on device")


def test_failed_write_keeps_the_previous_set_and_says_what_to_free(tmp_path, model):
    store = CheckpointStore(tmp_path)
    state = _save_epochs(store, model, 2)
    before = {p.name: p.read_bytes() for p in store.files() if p.exists()}
    state.record_epoch(3, {"loss": 0.1, "val_auc": 0.9}, 0.5)
    with pytest.raises(CheckpointError, match="epoch 3.*No space left on device.*free some space.*epoch 2 is intact"):
        store.save(_FailingModel(), state)
    assert {p.name: p.read_bytes() for p in store.files() if p.exists()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no temporary left behind


def test_disk_space_check_stops_before_training(tmp_path, model, monkeypatch):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 10 * 1024 * 1024))
    with pytest.raises(CheckpointError, match="only 10 MB free"):
        check_disk_space(tmp_path, model)

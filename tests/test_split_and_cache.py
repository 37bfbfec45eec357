"""The split (stratified, reproducible, leak-free), augmentation, and the data cache."""

import json

import numpy as np
import pytest

from augmentation import SplitConfig, augment_hosts, split_and_augment, stratified_split
from conftest import make_workdir, random_curves, run_trainer, write_csv


def test_split_is_stratified_reproducible_and_seed_dependent():
    label = np.array([1] * 40 + [0] * 960)
    first = stratified_split(label, SplitConfig(), seed=1)
    again = stratified_split(label, SplitConfig(), seed=1)
    other = stratified_split(label, SplitConfig(), seed=2)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["test"], other["test"])
    sizes = {k: len(v) for k, v in first.items()}
    assert sizes == {"train": 700, "val": 150, "test": 150}
    assert [int(label[first[k]].sum()) for k in ("train", "val", "test")] == [28, 6, 6]
    assert len(np.unique(np.concatenate(list(first.values())))) == 1000


def test_augmentation_only_copies_training_hosts_so_nothing_leaks():
    label = np.array([1] * 30 + [0] * 270)
    rng = np.random.default_rng(0)
    flux = rng.normal(size=(300, 50)).astype(np.float32) + np.arange(300)[:, None]  # each row identifiable
    splits = split_and_augment(flux, label, SplitConfig(augment_copies=3, injected_fraction=0.0, injected_binary_fraction=0.0), seed=5)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert len(train) == 210 + 21 * 3 and train.hosts() == 21 * 4
    assert not val.augmented.any() and not test.augmented.any()
    held_out = set(val.index) | set(test.index)
    assert not held_out & set(train.index)  # no original or copy of a held-out star in training
    copies = train.augmented
    assert set(train.index[copies]) <= set(train.index[~copies & (train.label == 1)])
    # Each copy holds exactly its source's values (shifted and/or reversed, plus small noise).
    source_means = flux[train.index[copies]].mean(axis=1)
    np.testing.assert_allclose(train.flux[copies].mean(axis=1), source_means, atol=0.5)


def test_augment_hosts_reverses_and_shifts_without_changing_values():
    rng = np.random.default_rng(3)
    row = np.arange(20, dtype=np.float64)[None, :] * 0.0 + np.sin(np.arange(20))[None, :]
    copies = augment_hosts(np.repeat(row, 4, axis=0), 2, rng)
    assert copies.shape == (8, 20)
    for copy in copies:
        assert np.allclose(np.sort(copy), np.sort(row[0]), atol=2.0)  # same values, up to the small noise


def _data(workdir, hosts=8, rows=48, seed=0):
    labels, flux = random_curves(rows, 64, hosts, seed)
    return write_csv(workdir / "data" / "curves.csv", labels, flux)


def test_cache_is_reused_then_rebuilt_on_changed_file_setting_or_corruption(tmp_path, tiny_config):
    workdir = make_workdir(tmp_path)
    csv = _data(workdir)
    first = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "No saved training data" in first.stdout and "curves.csv: 48 curves (8 planet hosts)" in first.stdout
    cache = workdir / "checkpoints" / "training_data.npz"
    with np.load(cache, allow_pickle=False) as archive:
        assert {"X_train", "X_val", "X_test", "y_train", "y_val", "y_test"} <= set(archive.files)
        assert archive["X_train"].dtype == np.float32 and archive["X_train"].shape[1:] == (128, 1)
        fingerprint = json.loads(str(archive["fingerprint"]))
    assert fingerprint["files"][0]["name"] == "curves.csv"

    again = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1")
    assert "Found saved training data - loading" in again.stdout
    assert "48 curves (8 planet hosts)" not in again.stdout  # the CSV was not parsed again

    _data(workdir, seed=1)  # same name, new content
    changed = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1", "--fresh")
    assert "out of date (file curves.csv changed)" in changed.stdout

    config = json.loads(tiny_config.read_text())
    config["preprocessing"]["detrend_window"] = 31
    tiny_config.write_text(json.dumps(config))
    setting = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1", "--fresh")
    assert "preprocessing.detrend_window 21 -> 31" in setting.stdout

    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    damaged = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1", "--fresh")
    assert damaged.returncode == 0, damaged.stdout + damaged.stderr
    assert "is damaged" in damaged.stderr and "rebuilding" in damaged.stderr
    with np.load(cache, allow_pickle=False) as archive:
        assert len(archive["y_test"]) > 0
    assert csv.exists()


def test_stored_npz_reads_what_np_load_reads_into_aligned_buffers(tmp_path):
    from data_cache import StoredNpz

    arrays = {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "text": np.array('{"a": 1}'),
              "names": np.array(["a.csv", "sub/b.csv"]), "empty": np.zeros((0, 5), np.int8)}
    np.savez(tmp_path / "a.npz", **arrays)
    with StoredNpz(tmp_path / "a.npz") as archive:
        for name, expected in arrays.items():
            got = archive[name]
            assert got.dtype == expected.dtype and got.shape == expected.shape and np.array_equal(got, expected)
            assert got.ctypes.data % 64 == 0, name
        with pytest.raises(KeyError):
            archive["missing"]
    np.savez_compressed(tmp_path / "compressed.npz", x=arrays["x"])
    with StoredNpz(tmp_path / "compressed.npz") as archive, pytest.raises(ValueError, match="compressed"):
        archive["x"]
    np.savez(tmp_path / "objects.npz", o=np.array([{"a": 1}], dtype=object))
    with StoredNpz(tmp_path / "objects.npz") as archive, pytest.raises(ValueError, match="object"):
        archive["o"]


def test_cache_write_checks_the_disk_first_and_names_the_folder(tmp_path, monkeypatch):
    import collections
    import shutil

    from data_cache import CacheSpaceError, check_room_for_cache

    check_room_for_cache(tmp_path / "cache" / "training_data.npz", 10**6)  # room: nothing happens
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 60 * 10**6))
    with pytest.raises(CacheSpaceError, match=r"only 60 MB free in .*cache; the preprocessed data cache "
                                              r"training_data.npz needs 20 MB"):
        check_room_for_cache(tmp_path / "cache" / "training_data.npz", 20 * 10**6)
    assert list((tmp_path / "cache").iterdir()) == []

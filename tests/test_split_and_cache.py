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
    config = SplitConfig(augment_copies=3, injected_fraction=0.0, injected_binary_fraction=0.0,
                         validation_injected_fraction=0.0, validation_injected_binary_fraction=0.0,
                         injected_gap_fraction=0.0)
    splits = split_and_augment(flux, label, config, seed=5)
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


def test_the_validation_split_gets_injections_into_its_own_non_hosts_and_training_is_unchanged():
    label = np.array([1] * 30 + [0] * 270)
    rng = np.random.default_rng(0)
    flux = rng.normal(size=(300, 512)) + np.arange(300)[:, None]  # float64: a copy minus its source is the signal
    splits = split_and_augment(flux, label, SplitConfig(), seed=5)
    val, test = splits["val"], splits["test"]
    own = ~val.augmented
    assert own.sum() == 45 and val.label[own].sum() == 4 and not test.augmented.any()
    assert own[:45].all() and not own[45:].any()  # the split's own curves first, then the copies
    non_hosts = set(val.index[own & (val.label == 0)])
    assert set(val.index[~own]) <= non_hosts  # copies of the split's own non-hosts only: nothing leaks
    # One injected planet (host) per non-host, then half as many injected binaries (non-hosts).
    assert list(val.label[~own]) == [1] * 41 + [0] * 20
    added = val.flux[~own] - flux[val.index[~own]]  # each copy is its source star plus a signal
    planets, binaries = added[:41], added[41:]
    assert (planets <= 0).all() and (planets < 0).any(axis=1).all()  # transits only take light away
    assert (np.abs(binaries) > 0).any(axis=1).all()
    # Validated as before: off, the split is 1.5's, and the training split is the same bits either way.
    off = split_and_augment(flux, label, SplitConfig(validation_injected_fraction=0.0,
                                                     validation_injected_binary_fraction=0.0), seed=5)
    assert not off["val"].augmented.any() and np.array_equal(off["val"].flux, val.flux[own])
    assert np.array_equal(off["train"].flux, splits["train"].flux)
    assert "validation_injected_fraction" not in SplitConfig(validation_injected_fraction=0.0).fingerprint()
    assert SplitConfig().fingerprint()["validation_injected_fraction"] == 1.0
    # The injections' S/N counted as before it was a setting: the fingerprint of before.
    assert "injection_noise" not in SplitConfig().fingerprint()
    assert SplitConfig(injection_noise="transit_timescale").fingerprint()["injection_noise"] == "transit_timescale"
    with pytest.raises(ValueError, match="injection_noise must be one of point_to_point, transit_timescale"):
        SplitConfig(injection_noise="white")


def test_augment_hosts_reverses_and_shifts_without_changing_values():
    rng = np.random.default_rng(3)
    row = np.arange(20, dtype=np.float64)[None, :] * 0.0 + np.sin(np.arange(20))[None, :]
    copies = augment_hosts(np.repeat(row, 4, axis=0), 2, rng)
    assert copies.shape == (8, 20)
    for copy in copies:
        assert np.allclose(np.sort(copy), np.sort(row[0]), atol=2.0)  # same values, up to the small noise


def test_the_streamed_cache_holds_what_the_in_memory_split_holds(tmp_path, monkeypatch):
    """Stage 4 makes the copies chunk by chunk from curves on disk: the same bits as at once in memory."""
    import data_cache
    from augmentation import deepest_dips_of, plan_split
    from datasets import LoadedCurves
    from preprocessing import PreprocessingConfig, preprocess
    from row_store import RowFile
    from synthetic_data import generate_light_curves

    config, split, rows = PreprocessingConfig(), SplitConfig(augment_copies=3, injected_fraction=1.5), 500
    generated = generate_light_curves(rows, seed=3, positive_fraction=0.1)
    flux, label = generated.flux.astype(np.float32), (generated.label == 2).astype(np.int8)
    expected = split_and_augment(flux, label, split, seed=9)
    np.save(tmp_path / "loaded.npy", flux)
    curves = LoadedCurves(flux=RowFile.open_npy(tmp_path / "loaded.npy"), label=label, source=np.zeros(rows, np.int32),
                          line=np.arange(rows) + 2, files=["a.csv"], report=[{"rows": rows}])
    monkeypatch.setattr(data_cache, "CHUNK_ROWS", 256)  # several chunks of every kind of copy
    path = tmp_path / "training_data.npz"
    plan = plan_split(label, None, split, 9, flux.shape[1], deepest_dips_of(curves.flux, config))
    built = data_cache.build(path, curves, plan, {"seed": 9}, config)
    assert len(built.inputs("train")) > 2 * 256
    for data in (built, data_cache.load(path, {"seed": 9})):
        for name in ("train", "val", "test"):
            assert np.array_equal(np.asarray(data.inputs(name)), preprocess(expected[name].flux, config)), name
            for field in ("label", "index", "augmented"):
                assert np.array_equal(getattr(data.splits[name], field), getattr(expected[name], field)), (name, field)
        assert np.array_equal(np.asarray(data.raw_test), expected["test"].flux)


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
        assert {"y_train", "y_val", "y_test", "arrays"} <= set(archive.files)
        fingerprint = json.loads(str(archive["fingerprint"]))
        arrays = json.loads(str(archive["arrays"]))
        train_rows = len(archive["y_train"])
    assert fingerprint["files"][0]["name"] == "curves.csv"
    # The curves are .npy files beside the index, named by it.
    x_train = np.load(cache.with_name(arrays["X_train"]), allow_pickle=False)
    assert x_train.dtype == np.float32 and x_train.shape == (train_rows, 128, 2)
    assert sorted(p.name for p in cache.parent.glob("training_data.*.npy")) == sorted(arrays.values())

    again = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1")
    assert "Found saved training data - loading" in again.stdout
    assert "48 curves (8 planet hosts)" not in again.stdout  # the CSV was not parsed again

    # A file (same name, new content) and a setting changed: both named, in one line.
    _data(workdir, seed=1)
    config = json.loads(tiny_config.read_text())
    config["preprocessing"]["detrend_window"] = 31
    tiny_config.write_text(json.dumps(config))
    changed = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1", "--fresh")
    # The extra window follows the first (1.5 times it) and is named too.
    assert ("out of date (file curves.csv changed, preprocessing.detrend_window 21 -> 31, "
            "preprocessing.extra_detrend_windows [31] -> [47])") in changed.stdout

    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    damaged = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1", "--fresh")
    assert damaged.returncode == 0, damaged.stdout + damaged.stderr
    assert "is damaged" in damaged.stderr and "rebuilding" in damaged.stderr
    with np.load(cache, allow_pickle=False) as archive:
        assert len(archive["y_test"]) > 0
        arrays = json.loads(str(archive["arrays"]))
    assert csv.exists()

    # A truncated array file is damage too; the rebuild leaves only the new build's files.
    x_val = cache.with_name(arrays["X_val"])
    x_val.write_bytes(x_val.read_bytes()[:-100])
    truncated = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1", "--fresh")
    assert truncated.returncode == 0, truncated.stdout + truncated.stderr
    assert "is damaged" in truncated.stderr and "truncated" in truncated.stderr
    with np.load(cache, allow_pickle=False) as archive:
        rebuilt = json.loads(str(archive["arrays"]))
    assert rebuilt != arrays
    assert sorted(p.name for p in cache.parent.glob("training_data.*")) == sorted([cache.name, *rebuilt.values()])


def test_row_file_reads_what_np_load_reads_by_rows_and_refuses_damage(tmp_path):
    from row_store import RowFile, RowFiles, RowFileWriter

    x = np.arange(5 * 3 * 2, dtype=np.float32).reshape(5, 3, 2)
    np.save(tmp_path / "x.npy", x)
    rows = RowFile.open_npy(tmp_path / "x.npy")
    assert rows.shape == x.shape and len(rows) == 5 and rows.dtype == np.float32
    assert np.array_equal(np.asarray(rows), x)
    assert np.array_equal(rows[1:4], x[1:4]) and np.array_equal(rows[3], x[3]) and np.array_equal(rows[::2], x[::2])
    picked = [4, 0, 0, 2, 3, -1]  # any order, repeats, negative: as ndarray.take
    assert np.array_equal(rows.take(picked, axis=0), x.take(picked, axis=0))
    assert rows.take(picked, axis=0).ctypes.data % 64 == 0
    assert rows[5:].shape == (0, 3, 2)
    with pytest.raises(IndexError):
        rows.take([5])

    # Several files read as one array (a multi-worker job's shards), rows in any order across them.
    np.save(tmp_path / "y.npy", x[:2] + 100)
    both = RowFiles([rows, RowFile.open_npy(tmp_path / "y.npy")])
    joined = np.concatenate([x, x[:2] + 100])
    assert both.shape == (7, 3, 2) and np.array_equal(np.asarray(both), joined)
    assert np.array_equal(both.take([6, 0, 5, 4, -2], axis=0), joined.take([6, 0, 5, 4, -2], axis=0))
    assert np.array_equal(both[3:6], joined[3:6]) and both.paths == [tmp_path / "x.npy", tmp_path / "y.npy"]
    with pytest.raises(ValueError, match="rows of"):
        RowFiles([rows, RowFile(tmp_path / "y.npy", (2, 6), np.float32)])

    # Written by rows at any position, it reads back as np.load reads it.
    writer = RowFileWriter(tmp_path / "w.npy", (5, 3, 2), np.float32)
    writer.write(3, x[3:])
    writer.write(0, x[:3])
    writer.close()
    assert np.array_equal(np.load(tmp_path / "w.npy", allow_pickle=False), x)
    with pytest.raises(ValueError):
        RowFileWriter(tmp_path / "v.npy", (5, 3, 2), np.float32).write(4, x[:2])  # past the end

    (tmp_path / "short.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:-4])
    with pytest.raises(ValueError, match="truncated"):
        RowFile.open_npy(tmp_path / "short.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object"):
        RowFile.open_npy(tmp_path / "objects.npy")


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


def test_no_planets_are_injected_into_stars_with_deeper_dips_of_their_own():
    """``injected_planet_max_dip``: as many injected planets, none on a star with dips deeper than
    the limit (binaries' eclipses); the injected binaries and gaps still go to every non-host."""
    import dataclasses

    from augmentation import deepest_dips_of, plan_split
    from preprocessing import PreprocessingConfig, deepest_dip

    rng = np.random.default_rng(2)
    label = (np.arange(600) % 10 == 0).astype(np.int8)
    flux = rng.normal(0.0, 1.0, (600, 400))
    deep = (np.arange(600) % 5 == 1)  # a fifth of the stars: eclipses 100 sigmas deep every 50 cadences
    for start in range(10, 400, 50):
        flux[deep, start:start + 4] -= 100.0
    dips = deepest_dip(flux, PreprocessingConfig(sequence_length=400))
    assert (dips[deep] > 50).all() and (dips[~deep] < 5).all()
    limited = SplitConfig()
    assert limited.injected_planet_max_dip == 50.0
    plan = plan_split(label, None, limited, 3, 400, deepest_dips_of(flux))
    anywhere = plan_split(label, None, dataclasses.replace(limited, injected_planet_max_dip=0.0), 3, 400)
    split_non_hosts = [plan.rows[name][label[plan.rows[name]] == 0] for name in ("train", "val")]
    assert plan.deep_dip_non_hosts == sum(int(deep[rows].sum()) for rows in split_non_hosts) > 0
    for name in ("train", "val"):
        by_kind = {copies.kind: copies for copies in plan.copies_of(name)}
        everywhere = {copies.kind: copies for copies in anywhere.copies_of(name)}
        assert len(by_kind["injected planets"]) == len(everywhere["injected planets"])
        assert not deep[by_kind["injected planets"].source].any()
        assert deep[everywhere["injected planets"].source].any()  # without the limit, some went there
        for kind in ("injected binaries", "injected gaps") if name == "train" else ("injected binaries",):
            assert np.array_equal(by_kind[kind].source, everywhere[kind].source), kind
            assert deep[by_kind[kind].source].any(), kind
    # The limit is a setting of the split (and so of the cache); 0 splits as before it.
    assert SplitConfig().fingerprint()["injected_planet_max_dip"] == 50.0
    assert "injected_planet_max_dip" not in SplitConfig(injected_planet_max_dip=0.0).fingerprint()
    with pytest.raises(ValueError, match="plan_split needs the curves' deepest dips"):
        plan_split(label, None, limited, 3, 400)
    with pytest.raises(ValueError, match="injected_planet_max_dip must be 0"):
        SplitConfig(injected_planet_max_dip=-1.0)

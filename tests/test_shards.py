"""Data preparation shared among the workers of a job: the same cache, bit for bit, as one process makes.

The workers are threads here, in step at a ``threading.Barrier`` as the job's are at its
collective barriers; the two-worker job of real processes is in test_distribute.py.
"""

from __future__ import annotations

import json
import threading

import numpy as np

from augmentation import SplitConfig, deepest_dips_of, plan_split
from conftest import random_curves, write_csv
from test_survey_files import _survey_data

CONFIG = {"sequence_length": 128, "detrend_window": 21}
SPLIT = SplitConfig(augment_copies=3, injected_fraction=1.5, injected_binary_fraction=1.0, injected_gap_fraction=1.0)


def test_skipped_copies_leave_the_next_ones_as_they_are():
    """A worker passes over the others' copies (``Copies.skip``): the copies after are the same bits."""
    rng = np.random.default_rng(0)
    label = (rng.random(1200) < 0.3).astype(np.int8)
    flux = rng.normal(0, 1, (1200, 200)).astype(np.float32)
    whole, skipping = (plan_split(label, None, SPLIT, 5, 200, deepest_dips_of(flux)) for _ in range(2))
    for made, passed in zip(whole.copies, skipping.copies):
        assert len(made) > 512, made.kind  # at least three chunks of 256
        first = made.make(flux[made.source[:256]])
        passed.skip(256)
        rest = slice(256, len(made))
        assert np.array_equal(made.make(flux[made.source[rest]]), passed.make(flux[passed.source[rest]])), made.kind
        assert not np.array_equal(first[:10], flux[made.source[:10]])  # the copies are not the curves


def _prepare(cache, files, labels, share, synchronise):
    """Stages 2-4 as hybrid_training.run makes them, for one worker; returns (cache, gathered curves' stars)."""
    import data_cache
    import shards
    from datasets import load_light_curves
    from preprocessing import PreprocessingConfig

    config = PreprocessingConfig(**CONFIG)
    fingerprint = data_cache.make_fingerprint([f.identity() for f in files], config, SPLIT, 11)
    with data_cache.scratch_file(cache, share) as scratch:
        curves = load_light_curves(share.files(files), config, survey_labels=labels, spill_to=scratch,
                                   check_classes=share.workers == 1)
        curves = shards.gather(curves, share, files, cache, config.sequence_length, synchronise)
        plan = plan_split(curves.label, curves.star, SPLIT, 11, config.sequence_length,
                          deepest_dips_of(curves.flux, config))
        data = data_cache.build(cache, curves, plan, fingerprint, config, share, synchronise)
        curves.flux.close()
    return data, curves.star


def test_three_workers_prepare_the_cache_one_process_makes(tmp_path, monkeypatch):
    import data_cache
    import shards
    from datasets import discover_files, label_survey_files

    monkeypatch.setattr(data_cache, "CHUNK_ROWS", 256)  # several chunks per split, divided among the workers
    # Threads stand in for the workers' processes here. numpy parses a .npy header with
    # ast.literal_eval, which CPython 3.11.7 cannot run in two threads at once (gh-106905: a
    # SystemError "AST constructor recursion depth mismatch", seen once in CI): one at a time, as
    # separate processes read them anyway.
    from numpy.lib import _format_impl

    header_lock, read_header = threading.Lock(), _format_impl._read_array_header

    def one_header_at_a_time(*args, **kwargs):
        with header_lock:
            return read_header(*args, **kwargs)

    monkeypatch.setattr(_format_impl, "_read_array_header", one_header_at_a_time)
    data = tmp_path / "data"
    for name, seed in (("a.csv", 1), ("b.csv", 2)):
        labels, flux = random_curves(150, 128, 30, seed)
        write_csv(data / name, labels, flux)
    table = _survey_data(data / "stars", np.random.default_rng(4))  # 18 stars, two quarters each
    files, _ = discover_files(data, exclude=table)
    files, survey_labels, _ = label_survey_files(files, table, False)

    one, stars = _prepare(tmp_path / "one" / "training_data.npz", files, survey_labels, shards.share_files(files, 0, 1),
                          lambda: None)

    cache = tmp_path / "job" / "training_data.npz"
    barrier, results, errors = threading.Barrier(3, timeout=120), {}, []

    def worker(index):
        try:
            results[index] = _prepare(cache, files, survey_labels, shards.share_files(files, index, 3), barrier.wait)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors

    runs = shards.share_files(files, 0, 3).file_runs
    assert all(end > first for first, end in runs), runs
    for first, end in runs[1:]:  # a cut never divides a star's quarters
        assert files[first].name.split("-")[0] != files[first - 1].name.split("-")[0]
    for index in range(3):
        shared, gathered_stars = results[index]
        assert np.array_equal(gathered_stars, stars)  # stars numbered as one process numbers them
        for name in ("train", "val", "test"):
            assert np.array_equal(np.asarray(shared.inputs(name)), np.asarray(one.inputs(name))), name
            for field in ("label", "index", "augmented"):
                assert np.array_equal(getattr(shared.splits[name], field), getattr(one.splits[name], field))
        assert np.array_equal(np.asarray(shared.raw_test), np.asarray(one.raw_test))
        assert np.array_equal(shared.line_test, one.line_test) and np.array_equal(shared.source_test, one.source_test)

    # The index names every worker's shard and records what each loaded and made; no scratch file is left.
    with np.load(cache, allow_pickle=False) as index:
        arrays = json.loads(str(index["arrays"]))
        records = json.loads(str(index["shards"]))
    assert [r["worker"] for r in records] == [1, 2, 3] and sum(r["curves"] for r in records) == len(stars)
    assert all(r["rows"]["X_train"][1] > r["rows"]["X_train"][0] for r in records)  # each made its share
    assert [r["files"] for r in records] == [[f.name for f in files[a:b]] for a, b in runs]
    assert len(arrays["X_train"]) == 3 and arrays["X_train"][0].endswith(".1of3.npy")  # val, test: one chunk, one shard
    for name, names in arrays.items():
        made = [r["rows"][name] for r in records if r["rows"][name][1] > r["rows"][name][0]]
        assert [stop - start for start, stop in made] == [len(np.load(cache.with_name(n))) for n in names]
    assert sorted(p.name for p in cache.parent.iterdir()) == sorted([cache.name, *sum(arrays.values(), [])])
    # A later run, of one process or of a job, reads it back as it was made.
    again = data_cache.load(cache, one.fingerprint)
    assert np.array_equal(np.asarray(again.inputs("train")), np.asarray(one.inputs("train")))


def test_a_share_is_whole_stars_and_about_equal_bytes():
    from types import SimpleNamespace

    import shards

    files = [SimpleNamespace(name=n, size=s, layout="kaggle") for n, s in zip("abcdef", (4, 4, 4, 4, 4, 4))]
    assert shards.share_files(files, 0, 3).file_runs == ((0, 2), (2, 4), (4, 6))
    assert shards.share_files(files, 0, 1).file_runs == ((0, 6),)
    assert shards.share_files(files[:1], 0, 2).file_runs == ((0, 1), (1, 1))  # a worker may load nothing

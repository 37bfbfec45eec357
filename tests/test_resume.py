"""Training killed and resumed for real: subprocesses, SIGKILL, SIGINT, SIGTERM, fault injection.

The reference is the same tiny run never interrupted; every interrupted run must end with the
same weights and optimizer state, bit for bit, and the same metric history.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import EPOCHS, assert_same_run, make_workdir, run_trainer, trainer_command, trainer_env

def test_resumed_at_several_epochs_equals_the_straight_run(reference, tiny_data, tmp_path):
    ref, config, _ = reference
    # The default network, spectrum branch included (its layer loaded by name in each fresh process).
    log = (ref / "training_full.log").read_text()
    assert "harmonic_power" in log  # the model summary lists it
    assert "non-hosts have dips deeper than 50 sigmas" in log  # stage 3 measured them (1.13)
    workdir = make_workdir(tmp_path, tiny_data)
    for epochs, start in ((2, 1), (4, 3), (EPOCHS, 5)):
        result = run_trainer(workdir, "--config", str(config), "--epochs", str(epochs))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Starting from epoch: {start}/{epochs}" in result.stdout
        if start > 1:
            assert "CHECKPOINT FOUND - RESUMING TRAINING" in result.stdout
            assert f"Resuming from epoch {start}..." in result.stdout
            assert "Found saved training data - loading" in result.stdout
    assert_same_run(workdir, ref)
    with np.load(workdir / "checkpoints" / "history.npz") as history:
        assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))
        assert history["resumed_after"].tolist() == [2, 4]


MAX_KILLS = 4  # kills of the kill -9 test before a rerun is left to finish


def test_kill_9_at_random_instants_then_rerun_until_done(reference, tiny_data, tmp_path):
    """One run killed at up to MAX_KILLS random instants (KILL_TEST_SEED picks them) and rerun.

    One trial: every step of a save is crashed at in turn by the next test; this one adds kills
    anywhere else (loading, the cache, a batch, the evaluation), as a user's would come."""
    ref, config, straight_seconds = reference
    chooser = random.Random(int(os.environ.get("KILL_TEST_SEED", "2026")))
    workdir = make_workdir(tmp_path, tiny_data)
    kills = 0
    for attempt in range(12):
        process = subprocess.Popen(trainer_command(workdir, "--config", str(config), "--epochs", str(EPOCHS)),
                                   cwd=workdir, env=trainer_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        # After a few kills the rerun is left to finish: on a machine busier than when the
        # reference was timed, every attempt could otherwise be killed before its first epoch.
        timeout = None if kills >= MAX_KILLS else chooser.uniform(0.3 * straight_seconds, 1.0 * straight_seconds)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        assert process.returncode == 0
        if kills == 0:
            # Finished before the first kill (runs vary up to 2x in time): start over.
            for folder in ("checkpoints", "models", "results"):
                shutil.rmtree(workdir / folder, ignore_errors=True)
            continue
        break
    else:
        pytest.fail("the run never finished after a kill")
    assert kills >= 1
    assert_same_run(workdir, ref)


# (epoch, step) for each crashing run, and the epoch the next run must start from.
CRASH_CHAIN = [((1, 1), 1), ((1, 2), 1), ((1, 3), 1), ((2, 4), 2), ((2, 5), 3), ((3, 6), 4), ((4, 7), 5),
               ((5, 8), 6)]


def test_crash_after_every_step_of_a_save_resumes_correctly(reference, tiny_data, tmp_path):
    """Each run resumes from the previous run's crash and crashes at the next step of the save."""
    ref, config, _ = reference
    workdir = make_workdir(tmp_path, tiny_data)
    expected_start = 1
    for (epoch, step), next_start in CRASH_CHAIN:
        env = trainer_env() | {"HYBRID_TRAINING_CRASH_AT": f"{epoch}:{step}"}
        result = run_trainer(workdir, "--config", str(config), "--epochs", str(EPOCHS), env=env)
        assert result.returncode == -signal.SIGKILL, (epoch, step, result.stdout + result.stderr)
        assert f"Starting from epoch: {expected_start}/{EPOCHS}" in result.stdout, (epoch, step, result.stdout)
        assert f"after save step {step}" in result.stdout
        expected_start = next_start
    final = run_trainer(workdir, "--config", str(config), "--epochs", str(EPOCHS))
    assert final.returncode == 0, final.stdout + final.stderr
    assert f"Starting from epoch: {expected_start}/{EPOCHS}" in final.stdout
    assert_same_run(workdir, ref)


def test_ctrl_c_then_sigterm_stop_cleanly_and_each_rerun_resumes(reference, tiny_data, tmp_path):
    """Ctrl-C once epoch 1 is saved; the rerun gets SIGTERM once epoch 3 is; the last rerun finishes."""
    ref, config, _ = reference
    workdir = make_workdir(tmp_path, tiny_data)
    last_epoch = workdir / "checkpoints" / "last_epoch.txt"
    resumed_after = []
    for signum, code, after_epoch in ((signal.SIGINT, 130, 1), (signal.SIGTERM, 143, 3)):
        process = subprocess.Popen(trainer_command(workdir, "--config", str(config), "--epochs", str(EPOCHS)),
                                   cwd=workdir, env=trainer_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        deadline = time.monotonic() + 120
        while not (last_epoch.exists() and last_epoch.read_text().strip() == str(after_epoch)):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == code, output
        assert "Rerun the same command to resume" in output and "Traceback" not in output
        if resumed_after:
            assert f"Resuming from epoch {resumed_after[-1] + 1}..." in output
        saved = int(last_epoch.read_text())
        assert after_epoch <= saved < EPOCHS
        resumed_after.append(saved)
    result = run_trainer(workdir, "--config", str(config), "--epochs", str(EPOCHS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Resuming from epoch {saved + 1}..." in result.stdout
    assert_same_run(workdir, ref)
    with np.load(workdir / "checkpoints" / "history.npz") as history:
        assert history["resumed_after"].tolist() == resumed_after


def test_changed_settings_stop_before_anything_is_written_and_fresh_starts_over(reference, tmp_path):
    ref, config, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref, workdir, ignore=shutil.ignore_patterns(".lock", "console.*", "training_full.log"))
    before = {p: p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}
    changed = config.parent / "changed.json"
    changed.write_text(config.read_text().replace('"lstm_units": 8', '"lstm_units": 16'))
    result = run_trainer(workdir, "--config", str(changed), "--epochs", str(EPOCHS + 1))
    assert result.returncode == 2
    assert "model.lstm_units 8 -> 16" in result.stderr and "--fresh" in result.stderr
    assert "[2/7]" not in result.stdout  # refused in stage 1, before the cache or anything else is written
    # 1.11's network (no spectrum branch) against a 1.12 checkpoint: named as the setting, which
    # 1.11's checkpoints do not record; the other way round it reads "(not set) -> 12".
    without = config.parent / "without_spectrum.json"
    without.write_text(config.read_text().replace('"lstm_units": 8', '"lstm_units": 8, "spectrum_harmonics": 0'))
    result = run_trainer(workdir, "--config", str(without), "--epochs", str(EPOCHS + 1))
    assert result.returncode == 2 and "model.spectrum_harmonics 12 -> (not set)" in result.stderr
    # 1.12's split (planets injected into any non-host) against a 1.13 checkpoint, the same way.
    anywhere = config.parent / "planets_anywhere.json"
    anywhere.write_text(config.read_text().replace('"injected_fraction": 0.25', '"injected_fraction": 0.25, '
                                                                                 '"injected_planet_max_dip": 0'))
    result = run_trainer(workdir, "--config", str(anywhere), "--epochs", str(EPOCHS + 1))
    assert result.returncode == 2 and "split.injected_planet_max_dip 50.0 -> (not set)" in result.stderr
    # 1.13's detrending (the first mask without the running median), the same way.
    unmedianed = config.parent / "first_mask_as_1_13.json"
    unmedianed.write_text(config.read_text().replace('"detrend_window": 21', '"detrend_window": 21, '
                                                                             '"median_first_mask": false'))
    result = run_trainer(workdir, "--config", str(unmedianed), "--epochs", str(EPOCHS + 1))
    assert result.returncode == 2 and "preprocessing.median_first_mask True -> (not set)" in result.stderr
    # A data setting changed: named as the setting, read from the cache the checkpoint was made with.
    detrended = config.parent / "detrended.json"
    detrended.write_text(config.read_text().replace('"detrend_window": 21', '"detrend_window": 23'))
    result = run_trainer(workdir, "--config", str(detrended), "--epochs", str(EPOCHS + 1))
    assert result.returncode == 2
    assert "preprocessing.detrend_window 21 -> 23" in result.stderr and "data (files" not in result.stderr
    after = {p: p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file() and p.name not in
             ("training_full.log", ".lock")}
    assert after == before
    fresh = run_trainer(workdir, "--config", str(changed), "--epochs", "1", "--fresh")
    assert fresh.returncode == 0, fresh.stdout
    assert "--fresh: removed" in fresh.stdout and "model_checkpoint.keras" in fresh.stdout
    assert "Starting from epoch: 1/1" in fresh.stdout


def test_status_reads_progress_without_tensorflow_or_changes(reference):
    ref, _, _ = reference
    before = {p: p.stat().st_mtime_ns for p in (ref / "checkpoints").iterdir()}
    code = ("import sys, hybrid_training; rc = hybrid_training.main(sys.argv[1:]); "
            "print('tensorflow loaded' if 'tensorflow' in sys.modules else 'no tensorflow'); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, "--checkpoint-dir", str(ref / "checkpoints"), "--status",
                             "--epochs", str(EPOCHS)], cwd=__import__("conftest").ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"Last completed epoch: {EPOCHS}/{EPOCHS}" in result.stdout
    assert "Best val_auc" in result.stdout and "Average epoch time" in result.stdout
    assert "no tensorflow" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in (ref / "checkpoints").iterdir()} == before


def test_a_second_trainer_on_the_same_checkpoint_folder_stops(tiny_data, tmp_path, tiny_config):
    from atomic_io import exclusive_folder

    workdir = make_workdir(tmp_path, tiny_data)
    with exclusive_folder(workdir / "checkpoints", "a test"):
        result = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1")
    assert result.returncode == 2
    assert f"process {os.getpid()}" in result.stderr and "another --checkpoint-dir" in result.stderr
    assert not (workdir / "checkpoints" / "training_data.npz").exists()


def test_early_stopping_ends_the_fit_at_the_patience_and_a_rerun_goes_to_evaluation(tiny_data, tmp_path):
    import json

    from conftest import TINY_CONFIG

    workdir = make_workdir(tmp_path, tiny_data)
    config = workdir / "patient.json"
    config.write_text(json.dumps(TINY_CONFIG | {"training": {"early_stopping_patience": 1}}))
    result = run_trainer(workdir, "--config", str(config), "--epochs", "12")
    assert result.returncode == 0, result.stdout + result.stderr
    with np.load(workdir / "checkpoints" / "history.npz") as history:
        val_auc, epochs = history["val_auc"], history["epoch"].tolist()
    # Where a patience of one must stop: the first epoch whose val_auc is not a new best.
    best = np.maximum.accumulate(val_auc)
    not_better = [e for e in range(1, len(val_auc)) if not val_auc[e] > best[e - 1]]
    assert not_better, f"val_auc rose every epoch {val_auc}; the test needs a run that stops"
    assert epochs == list(range(1, not_better[0] + 2))
    assert "Early stopping: no better val_auc in 1 epochs" in result.stdout
    assert (workdir / "checkpoints" / "last_epoch.txt").read_text().strip() == str(len(epochs))
    rerun = run_trainer(workdir, "--config", str(config), "--epochs", "12")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Training already finished: stopped early" in rerun.stdout and "[7/7] Evaluating" in rerun.stdout


def test_each_epoch_reads_the_training_curves_in_views_drawn_from_seed_and_epoch():
    """The random views of training (``TrainingConfig.random_views``) are a pure function of (seed,
    epoch), so a resumed run replays them; the runs above train with them and resume bit for bit."""
    from epochs import epoch_views, view_rows

    shift, reverse = epoch_views(42, 3, 200, 50)
    again, other = epoch_views(42, 3, 200, 50), epoch_views(42, 4, 200, 50)
    assert np.array_equal(shift, again[0]) and np.array_equal(reverse, again[1])
    assert not np.array_equal(shift, other[0])
    assert 0 <= shift.min() and shift.max() < 50 and 0.3 < reverse.mean() < 0.7
    curves = np.random.default_rng(0).normal(size=(200, 50, 1)).astype(np.float32)
    viewed = view_rows(curves, shift, reverse)
    for row in range(200):
        expected = np.roll(curves[row], shift[row], axis=0)
        assert np.array_equal(viewed[row], expected[::-1] if reverse[row] else expected)


def test_epoch_parts_read_each_curve_once_a_cycle_and_resume_bit_for_bit(tiny_data, tmp_path):
    """``TrainingConfig.epoch_parts``: each epoch reads one part of the training curves, drawn
    from (seed, epoch); a run stopped after its first epoch and resumed ends as the straight run."""
    import json

    from conftest import TINY_CONFIG
    from epochs import epoch_order

    cycle = [epoch_order(42, epoch, 100, parts=3) for epoch in (3, 4, 5)]
    assert [len(part) for part in cycle] == [33, 33, 33] and len(set(np.concatenate(cycle))) == 99
    assert not np.array_equal(np.sort(epoch_order(42, 0, 100, parts=3)), np.sort(cycle[0]))
    assert np.array_equal(epoch_order(42, 4, 100, parts=3), cycle[1])
    assert np.array_equal(epoch_order(42, 4, 100), np.random.default_rng([42, 4, 4]).permutation(100))

    config = tmp_path / "parts.json"
    config.write_text(json.dumps(TINY_CONFIG | {"training": {"early_stopping_patience": 0, "epoch_parts": 2}}))
    (tmp_path / "straight").mkdir(), (tmp_path / "resumed").mkdir()
    straight, resumed = make_workdir(tmp_path / "straight", tiny_data), make_workdir(tmp_path / "resumed", tiny_data)
    result = run_trainer(straight, "--config", str(config), "--epochs", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("Training on "))
    rows = int(line.split()[2])
    assert f"Each epoch reads {rows // 2} of them, one of 2 parts in turn" in result.stdout
    for epochs in ("1", "3"):
        result = run_trainer(resumed, "--config", str(config), "--epochs", epochs)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "Resuming from epoch 2..." in result.stdout
    assert_same_run(resumed, straight)
    # More parts than curves: a one-line error naming the setting (the checkpoint of 2 parts
    # would be refused first, naming the change; --fresh starts over).
    config.write_text(json.dumps(TINY_CONFIG | {"training": {"early_stopping_patience": 0, "epoch_parts": 10**6}}))
    refused = run_trainer(resumed, "--config", str(config), "--epochs", "4")
    assert refused.returncode == 2 and "training.epoch_parts 2 -> 1000000" in refused.stderr, refused.stderr
    refused = run_trainer(resumed, "--config", str(config), "--epochs", "4", "--fresh")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"training.epoch_parts 1000000 is more than the {rows} training curves" in refused.stderr


def test_epoch_parts_null_is_three_parts_of_the_built_in_data_and_whole_epochs_of_yours(tiny_data, tmp_path, tiny_config):
    """The default ``epoch_parts`` (null) is settled at stage 1: 3 on the built-in data (its CSV
    with the truth beside it), 1 on files of your own; the run records the number it used."""
    import json

    from training import TrainingConfig

    assert TrainingConfig().epoch_parts is None
    assert [TrainingConfig().resolved(built_in).epoch_parts for built_in in (True, False)] == [3, 1]
    assert TrainingConfig(epoch_parts=2).resolved(built_in=True).epoch_parts == 2  # set: kept
    with pytest.raises(ValueError, match="not resolved"):
        TrainingConfig().fingerprint()
    # Whole epochs are fingerprinted as before 1.14.4: checkpoints of your own data resume.
    assert "epoch_parts" not in TrainingConfig().resolved(built_in=False).fingerprint()

    for name in ("built_in", "own"):
        (tmp_path / name).mkdir()
    built_in, own = make_workdir(tmp_path / "built_in", tiny_data), make_workdir(tmp_path / "own", tiny_data)
    for truth in (own / "data").rglob("*.truth.json"):
        truth.unlink()  # the same curves, now a file of one's own
    for workdir, parts in ((built_in, 3), (own, 1)):
        result = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        rows = int(next(line for line in result.stdout.splitlines() if line.startswith("Training on ")).split()[2])
        assert ("parts in turn" in result.stdout) == (parts == 3)
        assert parts == 1 or f"Each epoch reads {rows // 3} of them, one of 3 parts in turn" in result.stdout
        saved = json.loads((workdir / "results" / "settings.json").read_text())
        assert saved["training"]["epoch_parts"] == parts

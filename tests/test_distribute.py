"""--distribute: TF_CONFIG parsing, batches a strategy can split, and a real two-worker job on localhost.

The job test runs two trainer processes with TF_CONFIG (TensorFlow's MultiWorkerMirroredStrategy
on CPU), kills one mid-run with SIGKILL, checks that the other stops with the one-line message
instead of hanging, reruns both, and compares everything with an uninterrupted two-worker job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import (TINY_CONFIG, assert_same_run, checkpoint_arrays, make_workdir, run_trainer,
                      trainer_command, trainer_env)
from distribution import DistributionError, localhost_tf_configs, task_from_environment
from epochs import batch_bounds


# Epochs of each two-worker job: the kill comes once the chief has saved epoch 2.
JOB_EPOCHS = 4


def test_task_from_environment_finds_the_chief_and_names_what_is_wrong():
    assert task_from_environment("none", {}).is_chief
    assert task_from_environment("mirrored", {}).kind == "mirrored"
    configs = localhost_tf_configs(2)
    first = task_from_environment("multi-worker", {"TF_CONFIG": configs[0]})
    second = task_from_environment("multi-worker", {"TF_CONFIG": configs[1]})
    assert (first.is_chief, first.workers, first.index) == (True, 2, 0)
    assert (second.is_chief, second.workers, second.index) == (False, 2, 1)
    # With a chief task in the cluster, the chief writes and worker 0 does not.
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}
    task = task_from_environment("multi-worker", {"TF_CONFIG": json.dumps(with_chief)})
    assert (task.is_chief, task.workers, task.index) == (False, 2, 1)
    for environ, words in (({}, "needs TF_CONFIG"), ({"TF_CONFIG": "{"}, "not a cluster description"),
                           ({"TF_CONFIG": configs[0].replace('"index": 0', '"index": 5')}, "task worker 5 is not in its cluster")):
        with pytest.raises(DistributionError, match=words):
            task_from_environment("multi-worker", environ)


def test_batch_bounds_never_leave_a_replica_without_rows():
    assert batch_bounds(10, 4).tolist() == [0, 4, 8, 10]
    assert batch_bounds(9, 4, replicas=2).tolist() == [0, 4, 9]   # 1 row left: joins the batch before
    assert batch_bounds(10, 4, replicas=2).tolist() == [0, 4, 8, 10]
    assert batch_bounds(3, 4, replicas=2).tolist() == [0, 3]      # a single batch stays
    for rows in range(1, 40):
        bounds = batch_bounds(rows, 8, replicas=3)
        sizes = np.diff(bounds)
        assert bounds[0] == 0 and bounds[-1] == rows and (sizes >= min(3, rows)).all()


def start_job(workdir, scratch, epochs):
    """Both workers of a two-worker job on ``workdir``'s folders; their temporary folders go under ``scratch``."""
    processes = []
    for index, tf_config in enumerate(localhost_tf_configs(2)):
        env = trainer_env() | {"TF_CONFIG": tf_config, "TMPDIR": str(scratch)}
        out = open(workdir / f"worker{index}.txt", "w")
        processes.append(subprocess.Popen(
            trainer_command(workdir, "--config", str(workdir / "tiny.json"), "--epochs", str(epochs),
                            "--distribute", "multi-worker"),
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, text=True))
    return processes


def finish(processes, timeout=240):
    return [process.wait(timeout=timeout) for process in processes]


def output(workdir, index):
    return (workdir / f"worker{index}.txt").read_text()


def final_digest(text):
    lines = [line for line in text.splitlines() if "Final weights SHA-256" in line]
    assert lines, text[-3000:]
    return lines[-1].split()[-1]


@pytest.mark.slow  # six trainer processes, 2-4 minutes on 2 cores: bench/run_all.py runs it
def test_two_workers_train_stop_when_one_is_killed_and_resume_bit_for_bit(tmp_path):
    from synthetic_data import SyntheticConfig, write_synthetic_dataset

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    data = tmp_path / "data"  # two files: each worker loads one (shards.py)
    write_synthetic_dataset(data, SyntheticConfig(**TINY_CONFIG["synthetic"] | {"files": 2}), seed=7)
    runs = {}
    for name in ("reference", "killed"):
        (tmp_path / name).mkdir()
        runs[name] = make_workdir(tmp_path / name, data)
        (runs[name] / "tiny.json").write_text(json.dumps(TINY_CONFIG))

    # An uninterrupted two-worker job.
    reference = runs["reference"]
    codes = finish(start_job(reference, scratch, JOB_EPOCHS))
    assert codes == [0, 0], output(reference, 0)[-3000:] + output(reference, 1)[-3000:]
    digests = [final_digest(output(reference, i)) for i in range(2)]
    assert digests[0] == digests[1]                      # both workers end with the same weights
    assert "Distributed over 2 replicas: global batch 32" in output(reference, 0)
    # The workers shared the data preparation: each loaded one file and made part of the cache.
    for index in range(2):
        assert "This worker loads 1 of the 2 files" in output(reference, index)
    with np.load(reference / "checkpoints" / "training_data.npz", allow_pickle=False) as cache:
        records = json.loads(str(cache["shards"]))
        train_shards = json.loads(str(cache["arrays"]))["X_train"]
    assert [len(record["files"]) for record in records] == [1, 1] and len(train_shards) == 2

    # The same job, worker 1 killed once the chief has saved epoch 2.
    killed = runs["killed"]
    processes = start_job(killed, scratch, JOB_EPOCHS)
    progress = killed / "checkpoints" / "last_epoch.txt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (progress.exists() and int(progress.read_text() or 0) >= 2):
        assert processes[0].poll() is None, output(killed, 0)[-3000:]
        time.sleep(0.1)
    os.kill(processes[1].pid, signal.SIGKILL)
    stopped = time.monotonic()
    chief_code = processes[0].wait(timeout=120)          # a bounded stop, not a hang
    waited = time.monotonic() - stopped
    processes[1].wait()
    saved = int(progress.read_text())
    assert chief_code == 3, output(killed, 0)[-3000:]
    assert f"another worker of the job stopped during epoch {saved + 1}" in output(killed, 0)
    assert f"Rerun the same command on every machine to resume from epoch {saved + 1}" in output(killed, 0)
    assert saved < JOB_EPOCHS and waited < 120

    # Rerun both: every worker resumes from the chief's checkpoint at the same epoch.
    codes = finish(start_job(killed, scratch, JOB_EPOCHS))
    assert codes == [0, 0], output(killed, 0)[-3000:] + output(killed, 1)[-3000:]
    for index in range(2):
        assert f"Resuming from epoch {saved + 1}..." in output(killed, index)
        assert final_digest(output(killed, index)) == digests[0]
    assert_same_run(killed, reference)                   # weights, optimizer and history, bit for bit

    # Only the chief wrote: the shared folders hold one set of files, the workers' temporary ones are gone.
    assert sorted(p.name for p in killed.iterdir()) == ["checkpoints", "data", "models", "results", "tiny.json",
                                                       "training_full.log", "worker0.txt", "worker1.txt"]
    assert [p.name for p in scratch.iterdir() if p.name.startswith("hybrid_training_worker")] == []
    log = (killed / "training_full.log").read_text()
    assert "task 2 of 2" not in log and log.count("Final weights SHA-256") == 1  # the chief's finished run only
    assert checkpoint_arrays(killed / "models" / "exoplanet_cnn_lstm.keras")


def test_distribute_refuses_in_one_line_without_a_cluster_or_a_gpu(tiny_data, tmp_path):
    workdir = make_workdir(tmp_path, tiny_data)
    env = trainer_env()
    env.pop("TF_CONFIG", None)
    result = run_trainer(workdir, "--distribute", "multi-worker", env=env)
    assert result.returncode == 2 and result.stderr.startswith("ERROR: --distribute multi-worker needs TF_CONFIG")
    assert len(result.stderr.strip().splitlines()) == 1 and not (workdir / "checkpoints").exists()
    # No GPU visible: stops before the data stages, writing nothing but the log.
    result = run_trainer(workdir, "--distribute", "mirrored", env=env | {"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "TensorFlow sees none" in errors[0]
    assert "[1/7]" not in result.stdout and not (workdir / "checkpoints" / "training_data.npz").exists()

#!/usr/bin/env python3
"""Peak memory (RSS) and epoch time of whole runs at 1x, 3x and 10x the seed's scale.

The seed's scale is 32,383 curves (16 CSV files of the built-in generator, 645 MB). Scale k is
k such data sets, of seeds 1..k, in one data folder (hard links: each set is written once). At
each scale, ``hybrid_training.py --epochs 2`` runs in a child process (all seven stages) and
this script reads the child's peak resident set size (the kernel's high-water mark, VmHWM,
read every 50 ms; rusage's ru_maxrss would also count the parent's memory at the fork), with
the peak of each stage from the same samples, and the last epoch's time from the trainer's log
(the first also traces the model's functions). The
memory target: the 10x run peaks at <= 2.5 GB; the time target: its epoch time per training
curve within 10 % of the 1x run's.

The baseline at the smallest scale, run the same way: a plain Keras script that loads the
trainer's preprocessed arrays into memory and calls ``model.fit(x, y, batch_size=32,
shuffle=True)`` then ``model.predict`` on the test split, the least a script that holds the
arrays needs (at 3x and 10x those arrays alone outgrow this machine's memory). Medians of the
repetitions.

    python3 bench/peak_memory.py                                   # 1x, 3x, 10x (about an hour on 2 cores)
    python3 bench/peak_memory.py --scales 1 --rows 3000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import machine, trainer_command, whole_epochs, write_result

STAGE = re.compile(r"^\[(\d)/7\] (.+)$")
EPOCH = re.compile(r"^Epoch \d+/\d+ .* - ([0-9.]+)s - checkpoint saved")
TRAINING_ROWS = re.compile(r"^Training on (\d+) curves")


def child_peak(command: list[str]) -> tuple[int, dict[str, int], str]:
    """(peak RSS in bytes, peak RSS of each announced stage, its output) of one child process.

    Both from the child's /proc status sampled every 50 ms: VmHWM, the kernel's high-water mark
    of its resident memory since its exec, and VmRSS, split at the "[n/7] ..." lines it prints.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    stage, stages, peak, done = ["start-up"], {}, [0], threading.Event()

    def sample():
        while not done.is_set():
            try:
                with open(f"/proc/{process.pid}/status") as handle:
                    fields = dict(line.split(":", 1) for line in handle if line.startswith(("VmHWM", "VmRSS")))
                resident = int(fields["VmRSS"].split()[0]) * 1024
                peak[0] = max(peak[0], int(fields["VmHWM"].split()[0]) * 1024)
                stages[stage[0]] = max(stages.get(stage[0], 0), resident)
            except (OSError, ValueError, KeyError):
                pass  # not started yet, or gone
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = []
    for line in process.stdout:
        output.append(line)
        match = STAGE.match(line.strip())
        if match:
            stage[0] = f"[{match.group(1)}/7] {match.group(2)}"
    process.wait()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{command[1]} failed ({process.returncode}):\n{''.join(output)[-2000:]}")
    return max(peak[0], *stages.values()), stages, "".join(output)


def plain_child(cache: Path, epochs: int) -> None:
    """The baseline: a plain Keras script on the trainer's cached arrays, loaded into memory."""
    import keras

    from model import ModelConfig, build_model
    from epochs import class_weights

    with np.load(cache, allow_pickle=False) as index:
        files = json.loads(str(index["arrays"]))
        y, y_val = index["y_train"].astype(np.float32), index["y_val"].astype(np.float32)
    x, x_val, x_test = (np.load(cache.with_name(files[name]), allow_pickle=False) for name in ("X_train", "X_val", "X_test"))
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(), x.shape[1], channels=x.shape[2])
    weights = class_weights(y)
    model.fit(x, y, batch_size=32, shuffle=True, epochs=epochs, verbose=0, validation_data=(x_val, y_val),
              class_weight={0: weights[0], 1: weights[1]})
    model.predict(x_test, batch_size=256, verbose=0)


def data_at_scale(folder: Path, scale: int, rows: int) -> Path:
    """A data folder of ``scale`` built-in data sets (seeds 1..scale), each written once into ``folder``."""
    from synthetic_data import SyntheticConfig, write_synthetic_dataset

    data = folder / f"data-{scale}x"
    for seed in range(1, scale + 1):
        part = folder / "parts" / f"seed-{seed}"
        if not (part / "synthetic").is_dir():
            started = time.perf_counter()
            write_synthetic_dataset(part, SyntheticConfig(rows=rows, files=16 if rows >= 1600 else 1), seed=seed)
            print(f"  generated data set {seed} ({rows} curves) in {time.perf_counter() - started:.0f} s", flush=True)
        for source in sorted((part / "synthetic").iterdir()):
            target = data / f"seed-{seed}" / source.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(source, target)
    return data


def run_scale(folder: Path, scale: int, rows: int, epochs: int, config: Path | None = None) -> dict:
    """One whole run of the trainer at ``scale`` (with ``--config config``): peaks, epoch seconds, training rows."""
    run = folder / f"run-{scale}x"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    run.mkdir()
    settings_file = folder / f"settings-{scale}x.json"
    settings = json.loads(Path(config).read_text()) if config else {}
    settings_file.write_text(json.dumps(whole_epochs(settings)))
    peak, stages, output = child_peak(trainer_command(run, data_at_scale(folder, scale, rows), "--epochs", str(epochs),
                                                      "--config", str(settings_file)))
    lines = output.splitlines()
    seconds = [float(m.group(1)) for m in map(EPOCH.match, lines) if m]
    training_rows = [int(m.group(1)) for m in map(TRAINING_ROWS.match, lines) if m][0]
    disk = sum(p.stat().st_size for p in (run / "checkpoints").glob("training_data*"))
    # The last epoch's time: the first also traces the model's functions.
    return {"peak": peak, "stages": stages, "epoch_seconds": seconds[-1],
            "training_rows": training_rows, "cache_bytes": disk, "run": run}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--rows", type=int, default=32383, help="curves at 1x")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--folder", type=Path, help="where to write the data and runs (default: a temporary folder)")
    parser.add_argument("--config", type=Path, help="settings for the trainer's runs (e.g. one input channel: "
                                                    '{"preprocessing": {"extra_detrend_windows": []}})')
    parser.add_argument("--plain-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        plain_child(args.plain_child, args.epochs)
        return

    scales = {}
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        folder = Path(folder)
        for scale in sorted(args.scales):
            runs, plain = [], []
            for repeat in range(args.repeats):
                print(f"{scale}x, run {repeat + 1} of {args.repeats}", flush=True)
                runs.append(run_scale(folder, scale, args.rows, args.epochs, args.config))
                if scale == min(args.scales):  # the plain script, beside the smallest scale
                    cache = runs[-1]["run"] / "checkpoints" / "training_data.npz"
                    plain.append(child_peak([sys.executable, __file__, "--plain-child", str(cache),
                                             "--epochs", str(args.epochs)])[0])
            stage_names = [name for name in runs[0]["stages"] if name.startswith("[")]
            seconds = float(np.median([r["epoch_seconds"] for r in runs]))
            scales[scale] = {
                "curves": scale * args.rows, "training_rows": runs[0]["training_rows"],
                "peak_rss_gb": float(np.median([r["peak"] for r in runs])) / 1e9,
                "peak_rss_gb_runs": [r["peak"] / 1e9 for r in runs],
                "stage_peak_rss_gb": {name: float(np.median([r["stages"].get(name, 0) for r in runs])) / 1e9
                                      for name in stage_names},
                "epoch_seconds": seconds, "epoch_ms_per_curve": 1e3 * seconds / runs[0]["training_rows"],
                "cache_gb": runs[0]["cache_bytes"] / 1e9}
            if plain:
                scales[scale]["plain_keras_peak_rss_gb"] = float(np.median(plain)) / 1e9
            subprocess.run(["rm", "-rf", str(folder / f"run-{scale}x")], check=True)
    smallest = scales[min(scales)]
    for entry in scales.values():
        entry["epoch_time_per_curve_vs_smallest"] = entry["epoch_ms_per_curve"] / smallest["epoch_ms_per_curve"]
    largest = scales[max(scales)]
    result = {"rows_at_1x": args.rows, "epochs": args.epochs, "repeats": args.repeats,
              "config": json.loads(args.config.read_text()) if args.config else None,
              "scales": {f"{k}x": v for k, v in scales.items()},
              # The headline figures (bench/run_all.py's table): the largest scale's peak.
              "peak_rss_gb": largest["peak_rss_gb"], "rows": max(scales) * args.rows,
              "plain_keras_peak_rss_gb": smallest.get("plain_keras_peak_rss_gb"),
              "machine": machine()}
    names = list(largest["stage_peak_rss_gb"])
    print(f"{'peak resident memory, GB':32}" + "".join(f"{f'{k}x':>9}" for k in scales))
    print(f"{'whole run of hybrid_training.py':32}" + "".join(f"{v['peak_rss_gb']:9.2f}" for v in scales.values()))
    for name in names:
        print(f"{'  ' + name:32}" + "".join(f"{v['stage_peak_rss_gb'].get(name, 0):9.2f}" for v in scales.values()))
    print(f"{'curves (training rows)':32}" + "".join(f"{v['curves']:>9}" for v in scales.values()))
    print(f"{'training rows with copies':32}" + "".join(f"{v['training_rows']:>9}" for v in scales.values()))
    print(f"{'cache on disk, GB':32}" + "".join(f"{v['cache_gb']:9.2f}" for v in scales.values()))
    print(f"{'epoch, s':32}" + "".join(f"{v['epoch_seconds']:9.0f}" for v in scales.values()))
    print(f"{'epoch, ms per training curve':32}" + "".join(f"{v['epoch_ms_per_curve']:9.3f}" for v in scales.values()))
    print(f"{'  vs the smallest scale':32}" + "".join(f"{v['epoch_time_per_curve_vs_smallest']:9.2f}"
                                                      for v in scales.values()))
    if smallest.get("plain_keras_peak_rss_gb"):
        print(f"plain Keras script on the {min(scales)}x arrays, in memory: {smallest['plain_keras_peak_rss_gb']:.2f} GB")
    print(f"{args.epochs} epoch(s), {args.repeats} repeat(s); {result['machine']}")
    print(f"written to {write_result('peak_memory', result)}")


if __name__ == "__main__":
    main()

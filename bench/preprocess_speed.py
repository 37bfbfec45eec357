#!/usr/bin/env python3
"""Preprocessing speed and memory: chunk size and threads of ``preprocessing.preprocess``.

The same curves (the built-in generator) through ``preprocess`` with each setting, alternating
within each repetition: the first setting (2048 rows per chunk, one thread: the trainer before
this benchmark) is the baseline of the ratios. Reports curves/s (median) and the largest
growth of resident memory seen during a call, sampled every 5 ms, over the input and output.
Every setting's output is checked to be identical, bit for bit, to the baseline's.

    python3 bench/preprocess_speed.py
    python3 bench/preprocess_speed.py --rows 1000 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np

from common import machine, write_result

SETTINGS = [(2048, 1), (512, 1), (128, 1), (64, 1), (128, None)]  # (chunk_rows, workers); None: all cores


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed_call(function):
    """(seconds, peak resident growth in bytes during the call, result)."""
    baseline, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes() - baseline)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return seconds, peak[0], result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from memory import available_cores
    from preprocessing import PreprocessingConfig, preprocess
    from synthetic_data import generate_light_curves

    flux = generate_light_curves(args.rows, seed=3).flux.astype(np.float32)
    config = PreprocessingConfig()
    seconds = {s: [] for s in SETTINGS}
    memory = {s: [] for s in SETTINGS}
    reference = preprocess(flux, config, chunk_rows=SETTINGS[0][0], workers=SETTINGS[0][1])
    for repeat in range(args.repeats):
        for setting in SETTINGS if repeat % 2 == 0 else SETTINGS[::-1]:
            chunk_rows, workers = setting
            took, grew, out = timed_call(lambda: preprocess(flux, config, chunk_rows=chunk_rows, workers=workers))
            if not np.array_equal(out, reference):
                raise SystemExit(f"chunk_rows={chunk_rows}, workers={workers} changed the output")
            del out
            seconds[setting].append(took)
            memory[setting].append(grew)
    base = float(np.median(seconds[SETTINGS[0]]))
    rows = []
    for chunk_rows, workers in SETTINGS:
        median = float(np.median(seconds[(chunk_rows, workers)]))
        rows.append({"chunk_rows": chunk_rows, "workers": workers or available_cores(),
                     "curves_per_second": args.rows / median, "speed_ratio": base / median,
                     "peak_growth_gb": float(np.median(memory[(chunk_rows, workers)])) / 1e9,
                     "seconds": seconds[(chunk_rows, workers)]})
    result = {"rows": args.rows, "repeats": args.repeats, "settings": rows, "machine": machine()}
    print(f"{'chunk rows':>10}{'threads':>9}{'curves/s':>10}{'ratio':>8}{'peak +GB':>10}")
    for row in rows:
        print(f"{row['chunk_rows']:10d}{row['workers']:9d}{row['curves_per_second']:10.0f}{row['speed_ratio']:8.2f}"
              f"{row['peak_growth_gb']:10.2f}")
    print(f"ratio against 2048 rows, 1 thread; {args.rows} curves, median of {args.repeats}; identical outputs; "
          f"{result['machine']}")
    print(f"written to {write_result('preprocess_speed', result)}")


if __name__ == "__main__":
    main()

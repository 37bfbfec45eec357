#!/usr/bin/env python3
"""Data throughput: CSV files to the cached, preprocessed split, against a plain pandas.read_csv.

Writes the built-in data set at the seed's scale (default 32,000 curves in 16 files, about
640 MB), then, alternating, times (a) the trainer's stages 1-4 in-process: discover, load,
plan the split, make the copies and preprocess them a chunk at a time into
checkpoints/training_data.npz and its array files, as ``hybrid_training.py`` does; (b) ``pandas.read_csv`` of
the same files with its default engine, which only parses; (c) the trainer's stages 1-4 with one
input channel (``extra_detrend_windows`` empty), the default before 1.9, which the second
detrending of each curve costs against. Medians of the repetitions.

    python3 bench/data_throughput.py
    python3 bench/data_throughput.py --rows 3000 --files 4 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, write_result


def pipeline_seconds(data: Path, cache: Path, config) -> float:
    import data_cache
    from augmentation import SplitConfig, deepest_dips_of, plan_split
    from datasets import discover_files, load_light_curves

    started = time.perf_counter()
    files, _ = discover_files(data)
    split_config = SplitConfig()
    with data_cache.scratch_file(cache) as scratch:
        curves = load_light_curves(files, config, spill_to=scratch)
        plan = plan_split(curves.label, curves.star, split_config, 42, config.sequence_length,
                          deepest_dips_of(curves.flux, config))
        fingerprint = data_cache.make_fingerprint([f.identity() for f in files], config, split_config, 42)
        data_cache.build(cache, curves, plan, fingerprint, config)
    return time.perf_counter() - started


def pandas_seconds(data: Path) -> float:
    import pandas as pd

    started = time.perf_counter()
    for path in sorted(data.rglob("*.csv")):
        pd.read_csv(path)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import dataclasses

    from preprocessing import PreprocessingConfig
    from synthetic_data import SyntheticConfig, write_synthetic_dataset

    config = PreprocessingConfig()
    one_channel = dataclasses.replace(config, extra_detrend_windows=())
    ours, plain, single = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        write_synthetic_dataset(data, SyntheticConfig(rows=args.rows, files=args.files), seed=1)
        megabytes = sum(p.stat().st_size for p in data.rglob("*.csv")) / 1e6
        cache = Path(folder) / "cache" / "training_data.npz"
        variants = ["ours", "pandas", "one channel"]
        for repeat in range(args.repeats):
            for variant in variants[repeat % 3:] + variants[:repeat % 3]:
                if variant == "ours":
                    ours.append(pipeline_seconds(data, cache, config))
                elif variant == "pandas":
                    plain.append(pandas_seconds(data))
                else:
                    single.append(pipeline_seconds(data, cache, one_channel))
    result = {"rows": args.rows, "files": args.files, "megabytes": megabytes, "repeats": args.repeats,
              "pipeline_seconds": ours, "pandas_read_csv_seconds": plain,
              "median_pipeline_seconds": float(np.median(ours)), "median_pandas_seconds": float(np.median(plain)),
              "pipeline_mb_per_s": megabytes / float(np.median(ours)),
              "pandas_mb_per_s": megabytes / float(np.median(plain)),
              "ratio_pipeline_to_pandas_time": float(np.median(ours) / np.median(plain)),
              "channels": config.channels, "one_channel_pipeline_seconds": single,
              "median_one_channel_pipeline_seconds": float(np.median(single)),
              "ratio_pipeline_to_one_channel_time": float(np.median(ours) / np.median(single)), "machine": machine()}
    print(f"{megabytes:.0f} MB in {args.files} CSV files, {args.rows} curves")
    print(f"{'':44}{'median (s)':>12}{'MB/s':>10}")
    print(f"{'CSV -> cache (load, split, preprocess, save)':44}{result['median_pipeline_seconds']:12.1f}"
          f"{result['pipeline_mb_per_s']:10.1f}")
    print(f"{'the same, one channel (before 1.9)':44}{result['median_one_channel_pipeline_seconds']:12.1f}"
          f"{megabytes / result['median_one_channel_pipeline_seconds']:10.1f}")
    print(f"{'pandas.read_csv only (default engine)':44}{result['median_pandas_seconds']:12.1f}"
          f"{result['pandas_mb_per_s']:10.1f}")
    print(f"time ratio pipeline / plain read_csv: {result['ratio_pipeline_to_pandas_time']:.2f}; "
          f"pipeline / one channel: {result['ratio_pipeline_to_one_channel_time']:.2f}; {result['machine']}")
    print(f"written to {write_result('data_throughput', result)}")


if __name__ == "__main__":
    main()

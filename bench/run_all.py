#!/usr/bin/env python3
"""Run every benchmark, then print the README's "Performance" table from their results.

    python3 bench/run_all.py            # quick check, small sizes (about 5 minutes on 2 cores)
    python3 bench/run_all.py --full     # the default sizes, the seed's scale (26 min before injection; more now)
    python3 bench/run_all.py --table    # only print the table from results/bench/*.json

Each script runs in its own process, one after another (never two at once: they time the
machine), and writes ``results/bench/<name>.json``; the table is built from those files.
Then the tests marked slow, which the suite skips to stay within 10 minutes
(``python3 -m pytest -q --run-slow -m slow``; not with --only or --table).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import ROOT

QUICK = {
    "checkpoint_overhead": ["--rows", "2000", "--epochs", "3"],
    "resume_latency": ["--rows", "2000"],
    "data_throughput": ["--rows", "2000", "--files", "4"],
    "training_throughput": ["--rows", "2000", "--epochs", "3"],
    "peak_memory": ["--rows", "2000", "--scales", "1", "3"],
    "quality": ["--epochs", "5", "--test-rows", "1000", "--repeats", "1"],
    "preprocess_speed": ["--rows", "1000"],
    "fits_reading": ["--files", "200", "--repeats", "2"],
    "transit_model": ["--rows", "200", "--repeats", "2"],
    "distributed_overhead": ["--rows", "500", "--epochs", "3", "--repeats", "1"],
    "spectrum_cost": ["--epochs", "3", "--repeats", "1", "--rows", "400"],
    "first_epoch": ["--repeats", "1"],
    "plot_speed": ["--repeats", "2"],
}


# Curves at which each target is set (the seed's scale); smaller runs are checks, not verdicts.
SEED_SCALE = {"checkpoint_overhead": 22668, "resume_latency": 32000, "data_throughput": 32000,
              "training_throughput": 22668, "peak_memory": 10 * 32383}
# Issue 9's targets for the default run on unseen built-in curves (bench/quality.py).
QUALITY_TARGET = {"roc_auc": 0.97, "pr_auc": 0.80, "recall_at_precision_0.9": 0.60}


def table(results: dict) -> list[str]:
    """Markdown rows: what, measured, side-by-side baseline, target, met, command."""
    def command(name):
        return f"`python3 bench/{name}.py`"

    def met(name, ok):
        if results[name]["rows"] < SEED_SCALE[name]:
            return "n/a (small size)"
        return "yes" if ok else "no"

    rows = ["| Benchmark | Measured | Side by side | Target | Met | Sizes |",
            "|---|---|---|---|---|---|"]
    if "checkpoint_overhead" in results:
        r = results["checkpoint_overhead"]
        rows.append(f"| Checkpoint overhead ({command('checkpoint_overhead')}) | save {r['median_save_seconds']:.3f} s "
                    f"= {r['save_percent_of_epoch']:.2f} % of an epoch | epoch with/without callback "
                    f"{r['ratio']:.3f}x | <= 0.5 % | {met('checkpoint_overhead', r['save_percent_of_epoch'] <= 0.5)} | "
                    f"{r['rows']} training curves |")
    if "resume_latency" in results:
        r = results["resume_latency"]
        rows.append(f"| Resume latency ({command('resume_latency')}) | {r['median_resume_seconds']:.1f} s to the "
                    f"first batch | cold start {r['median_cold_start_seconds']:.1f} s "
                    f"({r['ratio_resume_to_cold']:.2f}x) | <= 5 s | "
                    f"{met('resume_latency', r['median_resume_seconds'] <= 5)} | {r['rows']} curves |")
    if "data_throughput" in results:
        r = results["data_throughput"]
        rows.append(f"| Data throughput ({command('data_throughput')}) | {r['median_pipeline_seconds']:.1f} s, "
                    f"{r['pipeline_mb_per_s']:.1f} MB/s CSV to cache | pandas.read_csv alone "
                    f"{r['median_pandas_seconds']:.1f} s ({r['ratio_pipeline_to_pandas_time']:.2f}x its time)"
                    + (f"; one input channel (before 1.9) {r['median_one_channel_pipeline_seconds']:.1f} s "
                       f"({r['ratio_pipeline_to_one_channel_time']:.2f}x its time)"
                       if "median_one_channel_pipeline_seconds" in r else "") + " | "
                    f"<= 60 s | {met('data_throughput', r['median_pipeline_seconds'] <= 60)} | "
                    f"{r['megabytes']:.0f} MB, {r['files']} files, {r['rows']} curves |")
    if "training_throughput" in results:
        r = results["training_throughput"]
        rate = r["samples_per_second"]
        rows.append(f"| Training throughput ({command('training_throughput')}) | {rate['ours']:.0f} samples/s | "
                    f"plain model.fit {rate['plain']:.0f} samples/s ({r['ratio_ours_to_plain']:.3f}x) | >= 0.98x | "
                    f"{met('training_throughput', r['ratio_ours_to_plain'] >= 0.98)} | {r['rows']} training curves |")
    if "peak_memory" in results:
        r = results["peak_memory"]
        scales = r["scales"]
        largest = scales[max(scales, key=lambda k: int(k[:-1]))]
        peaks = ", ".join(f"{k} {v['peak_rss_gb']:.2f} GB" for k, v in scales.items())
        time_ratio = largest["epoch_time_per_curve_vs_smallest"]
        sizes = ", ".join(f"{k} {v['curves']}" for k, v in scales.items())
        rows.append(f"| Peak memory ({command('peak_memory')}) | whole run: {peaks}; epoch time per curve "
                    f"{time_ratio:.2f}x the smallest scale's | plain Keras script holding the smallest scale's arrays "
                    f"{r['plain_keras_peak_rss_gb']:.2f} GB | largest <= 2.5 GB, epoch time per curve <= 1.1x | "
                    f"{met('peak_memory', largest['peak_rss_gb'] <= 2.5 and time_ratio <= 1.1)} | "
                    f"{sizes} curves |")
    if "quality" in results:
        r = results["quality"]
        scored, own = r["other_seed_test"], r["own_test_split"]
        unseen = scored["network"]
        # The clause: a target beyond the physics of the data (above the ideal observer's
        # figure, where it was scored) becomes "within 0.02 of it". The data are Kaggle-layout rows,
        # so the ceiling is the one over the cadences where it was scored (no time stamps).
        ideal = scored.get("ideal, cadences", scored.get("ideal observer"))
        targets = {k: (min(v, round(ideal[k] - 0.02, 3)) if ideal else v) for k, v in QUALITY_TARGET.items()}
        holds = ("n/a (short run)" if r["test_rows"] < 5000 or r["epochs_trained"] < 10 else
                 "yes" if all(unseen[k] >= v for k, v in targets.items()) else "no")
        target_text = ", ".join(
            f"{label} >= {QUALITY_TARGET[k]}" + (f" (beyond the ideal observer's {ideal[k]:.3f}: >= {targets[k]:.3f})"
                                                 if targets[k] < QUALITY_TARGET[k] else "")
            for k, label in (("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"), ("recall_at_precision_0.9", "recall@P0.9")))

        def strong(report):
            return report["thresholds"]["1% false-positive rate"]["recall_snr_ge_12"]

        wall = f", {r['wall_seconds']:.0f} s" if r.get("wall_seconds") else ""
        # A --network-only run scored no baselines.
        baselines = "; ".join(f"{name}: ROC AUC {scored[key]['roc_auc']:.3f}, S/N >= 12 {strong(scored[key]):.2f}"
                              for name, key in (("BLS", "BLS (SDE)"), ("oracle", "oracle")) if key in scored)
        recovered = r.get("injection_recovery", {}).get("search with time stamps")
        if recovered:
            baselines += (f"; a blind search with time stamps recovers {recovered['recall']:.3f} of the hosts "
                          f"(S/N >= 12 {recovered['recall_snr_ge_12']:.2f}, false alarms not counted)")
        for name, key in (("the ideal observer (the ceiling the noise sets)", "ideal observer"),
                          ("over the cadences, as a Kaggle-layout row allows", "ideal, cadences")):
            if key in scored:
                baselines += (f"; {name}: ROC AUC {scored[key]['roc_auc']:.3f}, PR AUC {scored[key]['pr_auc']:.3f}, "
                              f"recall@P0.9 {scored[key]['recall_at_precision_0.9']:.3f}")
        rows.append(f"| Quality ({command('quality')}) | unseen seed {r['test_seed']}: ROC AUC {unseen['roc_auc']:.3f}, "
                    f"PR AUC {unseen['pr_auc']:.3f}, recall@P0.9 {unseen['recall_at_precision_0.9']:.3f}, recall at "
                    f"S/N >= 12 and 1 % FPR {strong(unseen):.2f}; best epoch {r['best_epoch']} of "
                    f"{r['epochs_trained']}{wall} | {baselines + '; ' if baselines else ''}own test split: "
                    f"ROC AUC {own['roc_auc']:.3f} | {target_text} | {holds} | default run, {r['test_rows']} unseen "
                    "curves |")
    if "preprocess_speed" in results:
        r = results["preprocess_speed"]
        best = max(r["settings"], key=lambda s: s["speed_ratio"])
        rows.append(f"| Preprocessing ({command('preprocess_speed')}) | {best['curves_per_second']:.0f} curves/s "
                    f"({best['chunk_rows']} rows x {best['workers']} threads) | 2048 rows x 1 thread: "
                    f"{best['speed_ratio']:.2f}x faster | - | - | {r['rows']} curves |")
    if "fits_reading" in results:
        r = results["fits_reading"]
        rows.append(f"| FITS reading ({command('fits_reading')}) | {r['curves_per_second']['trainer']:.0f} curves/s "
                    f"(read, mask, grid, windows) | bare astropy.io.fits read: {r['curves_per_second']['astropy']:.0f} "
                    f"curves/s ({r['trainer_to_astropy_time']:.2f}x its time) | - | - | {r['files']} Kepler FITS files |")
    if "transit_model" in results:
        r = results["transit_model"]
        rows.append(f"| Transit model ({command('transit_model')}) | {r['curves_per_second']['transit_loss']:.0f} "
                    f"curves/s, same bits: {r['identical_bits']} | every cadence: "
                    f"{r['curves_per_second']['every cadence']:.0f} curves/s ({r['speed_ratio']:.2f}x faster) | - | - | "
                    f"{r['rows']} planets |")
    if "distributed_overhead" in results:
        r = results["distributed_overhead"]
        speed = r["samples_per_second"]
        rows.append(f"| Distributed overhead ({command('distributed_overhead')}) | 2 workers on one machine: "
                    f"{speed['2 workers']:.0f} samples/s | 1 worker {speed['1 worker']:.0f} samples/s "
                    f"({r['two_workers_over_one']:.2f}x); plain {speed['plain']:.0f} samples/s | - | - | "
                    f"{r['rows']} curves, {r['epochs']} epochs |")
    if "first_epoch" in results:
        r = results["first_epoch"]
        setup = r["median_setup_seconds"]
        rows.append(f"| First step's set-up ({command('first_epoch')}) | optimizer built with the model: default "
                    f"network {setup['default']['built']:.1f} s, tiny {setup['tiny']['built']:.1f} s | built in the "
                    f"first step: {setup['default']['lazy']:.1f} s ({r['ratio_built_to_lazy']['default']:.2f}x), "
                    f"{setup['tiny']['lazy']:.1f} s ({r['ratio_built_to_lazy']['tiny']:.2f}x) | - | - | "
                    f"{r['repeats']} fresh processes each |")
    if "plot_speed" in results:
        r = results["plot_speed"]
        median = r["median_seconds"]
        rows.append(f"| Stage 7's many-panel figures ({command('plot_speed')}) | fixed margins: history "
                    f"{median['training_history']['fixed margins']:.2f} s, gallery "
                    f"{median['light_curve_gallery']['fixed margins']:.2f} s | matplotlib's tight layout: "
                    f"{median['training_history']['tight_layout']:.2f} s "
                    f"({median['training_history']['ratio']:.2f}x), {median['light_curve_gallery']['tight_layout']:.2f} s "
                    f"({median['light_curve_gallery']['ratio']:.2f}x) | - | - | {r['rows']} curves, "
                    f"{r['repeats']} repeats |")
    machines = {json.dumps(r.get("machine"), sort_keys=True) for r in results.values()}
    for described in sorted(machines):
        rows.append("")
        rows.append(f"Machine: {described}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="default sizes (the seed's scale)")
    parser.add_argument("--table", action="store_true", help="only print the table from results/bench")
    parser.add_argument("--only", nargs="*", choices=list(QUICK), help="run just these")
    args = parser.parse_args()

    names = args.only or list(QUICK)
    if not args.table:
        for name in names:
            command = [sys.executable, str(ROOT / "bench" / f"{name}.py"), *([] if args.full else QUICK[name])]
            print(f"\n=== {' '.join(command[1:])}", flush=True)
            started = time.perf_counter()
            subprocess.run(command, check=True)
            print(f"=== {name}: {time.perf_counter() - started:.0f} s", flush=True)
    if not (args.table or args.only):
        command = [sys.executable, "-m", "pytest", "-q", "--run-slow", "-m", "slow"]
        print(f"\n=== {' '.join(command[1:])}", flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
    results = {}
    for name in QUICK:
        path = ROOT / "results" / "bench" / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    print()
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()

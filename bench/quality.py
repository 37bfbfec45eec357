#!/usr/bin/env python3
"""Quality: a default run on the built-in data, measured on unseen curves as transit surveys measure it.

Trains with default settings (``python3 hybrid_training.py``, built-in data, seed 42) in a
temporary folder, then scores the best model on a fresh built-in data set generated with another
seed (never seen, not even as validation), preprocessed exactly as in training. Side by side on
the same curves:
    network   the trained model's probability;
    BLS       the classical pipeline: the project's detrending, then astropy's BoxLeastSquares
              over 0.5-32 d; the score is the SDE of its highest peak (``transit_search.search``);
    oracle    a matched filter that knows each planet's true period, duration and time stamps
              (gaps included): BLS S/N at those alone, the practical detection limit. Non-hosts
              are scored at the period and duration of a host drawn at random from the same set.
              Also read at S/N 7.1 (Kepler's detection threshold): which transits stand out of
              the noise at all, whatever the false alarms.
    recovery  injection-recovery as survey pipelines count it (Kepler's DR25 detection
              efficiency, the issue's anchor): a blind BLS search of each host, recovered when
              its strongest dip matches the planet's ephemeris at S/N >= 7.1, false alarms not
              counted (``completeness.injection_recovery``); over the true time stamps, as a
              survey pipeline searches, and over the cadences, as a Kaggle-layout row allows.
    ideal     the ceiling the noise sets (``completeness.ideal_observer_scores``): a blind search
              with the exact transit shape, in Gaussian noise at each planet's survey S/N, that
              refuses every other signal; its false alarms are those of the classical grid's
              search in pure white noise on the set's own time stamps (1000 curves,
              ``transit_search.white_noise_peak_snr``). Where a target lies above this scorer's
              figure, it lies beyond the physics of the generated data.
    ideal, cadences
              the same ceiling for what a Kaggle-layout row carries: no time stamps. Its trials
              are those of a search over the cadences that is told where each closed-up gap is
              but not how much time it skipped (0.5-4 days), so each stretch between gaps has a
              phase of its own (``transit_search.segmented_search_snr``, in white noise cut at
              the set's gaps: 300 curves). A planet at its true phases reads the same S/N. Its
              peaks in noise spread wider than the highest of independent normals, so each
              curve's is drawn from the measured ones of curves with as many gaps
              (``completeness.ideal_observer_scores_measured``).
For each: ROC AUC, PR AUC, recall at precision 0.9; recall per transit S/N bin and the
false-positive rate per kind of non-host, at the threshold that passes 1 % of the non-hosts
(and, for the network, at its validation-chosen threshold). The BLS and oracle scores depend only
on the curves and the preprocessing, so they are cached in results/bench/. For the networks, the
non-hosts that rank above the threshold of recall at precision 0.9, which decide that figure:
how many lie at a closed-up gap of the generator's rows (beside one, or between two close ones,
a box like a single transit), and the kinds of the others (``completeness.false_positives_at_precision``);
and what the headline figures ask of them: each figure as it would be had the network ranked
every host at or above a survey S/N first, and also every non-host at a closed-up gap last
(``completeness.headline_with_hosts_first``).

The run is deterministic (same seed, same bits), so repetitions only vary the wall time (median
reported); the script checks that their scores agree. ``--run DIR`` scores the models of an
existing run folder instead of training (e.g. a run of older code, for a before/after table);
``--run DIR DIR ...`` scores the mean of several runs' networks, each on its own preprocessing.

How much of a figure is the luck of the set: 200 hosts are few (one of the 122 strong ones is
0.008 of their recall). Each headline figure comes with its 95 % interval, a bootstrap over the
set's curves (``completeness.bootstrap_headline``). ``--baseline DIR`` scores a second run's
network on the same curves (preprocessed with its own settings) and gives the paired
differences, network minus baseline, on the same resamples: a lever wins when the interval of
its difference leaves out zero, which the two intervals side by side cannot tell.

    python3 bench/quality.py
    python3 bench/quality.py --repeats 1 --run /tmp/old_run     # score an existing run
    python3 bench/quality.py --repeats 1 --run /tmp/new_run --baseline /tmp/old_run   # paired difference
    python3 bench/quality.py --repeats 1 --run /tmp/run_a /tmp/run_b --baseline /tmp/run_a   # an ensemble
    python3 bench/quality.py --repeats 1 --run /tmp/old_run --test-rows 20000 --test-seed 3033 --network-only
                                                                # tighter figures: 800 unseen hosts
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, machine, trainer_command, write_result

RECOVERY_TIME_STAMPS = "search with time stamps"
RECOVERY_CADENCES = "search on cadences"
IDEAL_OBSERVER = "ideal observer"
IDEAL_OVER_CADENCES = "ideal, cadences"
NOISE_CURVES = 1000   # white-noise curves that count the blind search's trials
NOISE_CURVES_CADENCES = 300   # the same over the cadences (more work a curve): about 100 of each number of gaps


def train_default(epochs: int) -> tuple[float, Path, tempfile.TemporaryDirectory]:
    """(wall seconds, run folder, its TemporaryDirectory) of one default run."""
    folder = tempfile.TemporaryDirectory()
    run = Path(folder.name)
    started = time.perf_counter()
    completed = subprocess.run(trainer_command(run, run / "data", "--epochs", str(epochs)),
                               capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"trainer failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    return wall, run, folder


def cached_arrays(name: str, key: str, compute) -> dict[str, np.ndarray]:
    """The arrays of ``results/bench/<name>.npz`` where it was stored under the same ``key`` (a
    JSON of what they depend on); otherwise ``compute()``'s, stored there under ``key``."""
    cache = ROOT / "results" / "bench" / f"{name}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["key"]) == key:
                return {array: stored[array] for array in stored.files if array != "key"}
    arrays = compute()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=key, **arrays)
    return arrays


def classical_scores(truth, inputs, config, seed: int, workers: int) -> tuple[dict, dict]:
    """(BLS SDE and oracle S/N of every curve, the hosts recovered by a blind search with and
    without time stamps); cached by set and preprocessing settings."""
    import transit_search
    from completeness import injection_recovery

    def compute() -> dict[str, np.ndarray]:
        started = time.perf_counter()
        found = transit_search.search(inputs, workers=workers)
        host = truth.label == 2
        rng = np.random.default_rng([seed, 99])
        donors = rng.choice(np.flatnonzero(host), int((~host).sum()))
        period, duration = truth.period.copy(), truth.duration.copy()
        period[~host], duration[~host] = truth.period[donors], truth.duration[donors]
        arrays = {"bls": found.sde, "oracle": transit_search.matched_filter_snr(inputs, period, duration, truth.time),
                  "recovered_time_stamps": injection_recovery(truth, inputs, True, workers),
                  # The baseline's own search over the cadences, read as a recovery.
                  "recovered_cadences": injection_recovery(truth, inputs, False, found=found)}
        print(f"BLS search, oracle and injection-recovery of {len(truth.label)} curves: "
              f"{time.perf_counter() - started:.0f} s")
        return arrays

    key = json.dumps({"rows": len(truth.label), "seed": seed, "preprocessing": config.to_json(),
                      "grid": [transit_search.PERIOD_RANGE_DAYS, transit_search.PERIODS,
                               transit_search.DURATIONS_DAYS, transit_search.OVERSAMPLE,
                               transit_search.SEARCH_BIN, transit_search.HARMONICS,
                               transit_search.PERIOD_TOLERANCE]}, sort_keys=True)
    arrays = cached_arrays(f"quality_classical_{seed}_{len(truth.label)}", key, compute)
    return ({"BLS (SDE)": arrays["bls"], "oracle": arrays["oracle"]},
            {RECOVERY_TIME_STAMPS: arrays["recovered_time_stamps"], RECOVERY_CADENCES: arrays["recovered_cadences"]})


def ideal_observer(truth, seed: int, workers: int, over_cadences: bool = False) -> tuple[np.ndarray, dict]:
    """(the ideal observer's scores of the set, what sets its false alarms); the white-noise search
    behind them is cached by set and grid. Over the time stamps, its independent trials per curve
    (``completeness.effective_trials``); ``over_cadences``, the search a Kaggle-layout row allows
    (told where the gaps are, not the time they skipped), whose peaks in noise the highest of
    independent normals does not describe: each curve then draws its noise peak from the measured
    ones of curves with as many stretches between gaps, and the medians of those are returned."""
    import synthetic_data
    import transit_search
    from completeness import effective_trials, ideal_observer_scores, ideal_observer_scores_measured

    rows = min(NOISE_CURVES_CADENCES if over_cadences else NOISE_CURVES, len(truth.label))
    search = transit_search.white_noise_peak_snr_over_cadences if over_cadences else transit_search.white_noise_peak_snr

    def compute() -> dict[str, np.ndarray]:
        started = time.perf_counter()
        peaks = search(truth.time[:rows], workers, seed)
        print(f"white-noise search of {rows} curves {'over the cadences, cut at' if over_cadences else 'on'} the set's "
              f"{'gaps' if over_cadences else 'time stamps'}: {time.perf_counter() - started:.0f} s")
        return {"peak_snr": peaks}

    grid = [transit_search.PERIOD_RANGE_DAYS, transit_search.PERIODS, transit_search.DURATIONS_DAYS,
            transit_search.OVERSAMPLE, transit_search.MAX_DUTY_CYCLE]
    key = json.dumps({"rows": len(truth.label), "seed": seed, "noise_curves": rows,
                      "grid": grid + ([list(synthetic_data.GAP_SKIP_DAYS)] if over_cadences else [])}, sort_keys=True)
    name = f"quality_white_noise{'_cadences' if over_cadences else ''}_{seed}_{len(truth.label)}"
    peaks = cached_arrays(name, key, compute)["peak_snr"]
    if not over_cadences:
        trials = effective_trials(peaks)
        return ideal_observer_scores(truth.snr, truth.label == 2, trials, seed), {"independent_trials": trials}
    stretches = np.array([transit_search.gap_ends(time).size + 1 for time in truth.time])
    medians = {int(k): float(np.median(peaks[stretches[:rows] == k])) for k in np.unique(stretches[:rows])}
    return (ideal_observer_scores_measured(truth.snr, truth.label == 2, stretches, peaks, stretches[:rows], seed),
            {"median_noise_peak_by_stretches": medians})


def network_scores(run: Path, truth, inputs: dict) -> tuple[np.ndarray, float, np.ndarray]:
    """(scores, validation threshold, the curves as scored) of a run folder's best model on the
    set's curves, preprocessed with the run's own settings (``inputs``: settings -> inputs, filled
    as needed)."""
    from completeness import built_in_inputs
    from evaluation import load_model_file
    from model import predict_scores
    from preprocessing import PreprocessingConfig
    from settings import Paths

    paths = Paths(models_dir=run / "models")
    config = PreprocessingConfig.from_json_file(paths.preprocessor_file)
    if config not in inputs:
        inputs[config] = built_in_inputs(truth, config)
    model = load_model_file(paths.best_model_file)  # with weight averaging, the averaged weights
    return (predict_scores(model, inputs[config]), json.loads(paths.threshold_file.read_text())["threshold"],
            inputs[config])


def score(runs: list[Path], args) -> tuple[dict, dict, object, dict]:
    """(completeness reports, scores, truth, injection-recovery reports) of the network, BLS, the
    oracle and the ideal observer on the unseen set, and of the ``--baseline`` run's network where one is given. With
    several runs, "network" is the mean of their networks' scores (an ensemble), without a
    validation threshold."""
    from completeness import (FALSE_POSITIVE_THRESHOLD, KEPLER_MES_THRESHOLD, VALIDATION_THRESHOLD, completeness,
                              false_positives_at_precision, fresh_built_in_set, headline_with_hosts_first,
                              recall_by_snr_per_transit, recovery_report, threshold_at_false_positive_rate)
    from synthetic_data import SyntheticConfig
    from memory import available_cores
    from preprocessing import PreprocessingConfig
    from settings import Paths

    config = PreprocessingConfig.from_json_file(Paths(models_dir=runs[0] / "models").preprocessor_file)
    # The survey-like host fraction of the default built-in data set.
    truth, inputs = fresh_built_in_set(args.test_rows, args.test_seed, SyntheticConfig().positive_fraction, config)
    host = truth.label == 2
    by_config = {config: inputs}
    scored = [network_scores(run, truth, by_config) for run in runs]
    scores = {"network": np.mean([values for values, _, _ in scored], axis=0)}
    validation_thresholds = {"network": scored[0][1]} if len(runs) == 1 else {}
    # Each network's curves as it read them: where is a non-host's deepest point (at a gap?).
    deepest = {"network": np.argmin(scored[0][2][..., 0], axis=1)}
    if args.baseline is not None:
        scores["baseline"], validation_thresholds["baseline"], baseline_inputs = network_scores(args.baseline, truth,
                                                                                                by_config)
        deepest["baseline"] = np.argmin(baseline_inputs[..., 0], axis=1)
    recovery, false_alarms = {}, {}
    if not args.network_only:
        workers = available_cores()
        classical, recovered = classical_scores(truth, inputs, config, args.test_seed, workers)
        scores |= classical
        recovery = {name: recovery_report(hosts, truth) for name, hosts in recovered.items()}
        scores[IDEAL_OBSERVER], false_alarms[IDEAL_OBSERVER] = ideal_observer(truth, args.test_seed, workers)
        scores[IDEAL_OVER_CADENCES], false_alarms[IDEAL_OVER_CADENCES] = ideal_observer(truth, args.test_seed, workers,
                                                                                        True)
        medians = ", ".join(f"{k} stretches {v:.2f}"
                            for k, v in false_alarms[IDEAL_OVER_CADENCES]["median_noise_peak_by_stretches"].items())
        print(f"ideal observer: {false_alarms[IDEAL_OBSERVER]['independent_trials']:.3g} independent trials a curve "
              f"(the classical grid in white noise on the time stamps); over the cadences, told the gaps, the median "
              f"peak in white noise: {medians}")
    reports = {}
    for name, values in scores.items():
        thresholds = {FALSE_POSITIVE_THRESHOLD: threshold_at_false_positive_rate(values, host)}
        if name in validation_thresholds:
            thresholds[VALIDATION_THRESHOLD] = validation_thresholds[name]
        if name == "oracle":
            # Kepler's detection threshold: what stands out of the noise at all.
            thresholds[f"S/N {KEPLER_MES_THRESHOLD}"] = KEPLER_MES_THRESHOLD
        reports[name] = completeness(values, truth, thresholds)
        reports[name]["recall_by_snr_per_transit"] = recall_by_snr_per_transit(
            values >= thresholds[FALSE_POSITIVE_THRESHOLD], truth)
        if name in deepest:
            reports[name]["false_positives_at_precision_0.9"] = false_positives_at_precision(values, truth, deepest[name])
            reports[name]["headline_with_hosts_first"] = headline_with_hosts_first(values, truth, deepest[name])
    for name, entries in false_alarms.items():
        reports[name] |= entries
    return reports, scores, truth, recovery


def add_intervals(reports: dict, scores: dict, truth, resamples: int) -> dict:
    """Each report's 95 % bootstrap intervals of the headline figures (over the set's curves), and
    the paired differences network - each other scorer, on the same resamples."""
    from completeness import HEADLINE_NAMES, bootstrap_headline, interval

    started = time.perf_counter()
    samples = bootstrap_headline(scores, truth, resamples)
    for name, report in reports.items():
        report["interval_95"] = {metric: bounds.tolist() for metric, bounds in zip(HEADLINE_NAMES, interval(samples[name]))}
        if name != "network":
            difference = samples["network"] - samples[name]
            report["network_minus_this"] = {
                metric: {"mean": float(np.nanmean(column)), "interval_95": bounds.tolist()}
                for metric, column, bounds in zip(HEADLINE_NAMES, difference.T, interval(difference))}
    print(f"bootstrap of {resamples} resamples of the curves: {time.perf_counter() - started:.0f} s")
    return reports


def print_tables(reports: dict, recovery: dict) -> None:
    from completeness import FALSE_POSITIVE_THRESHOLD, HEADLINE_NAMES, NEGATIVE_CLASSES, bin_labels

    print(f"{'':17}{'ROC AUC':>9}{'PR AUC':>9}{'recall@P0.9':>13}{'recall S/N>=12 @1%FPR':>23}")
    for name, report in reports.items():
        strong = report["thresholds"][FALSE_POSITIVE_THRESHOLD]["recall_snr_ge_12"]
        print(f"{name:17}{report['roc_auc']:9.3f}{report['pr_auc']:9.3f}{report['recall_at_precision_0.9']:13.3f}"
              f"{strong:23.3f}")
    if all("interval_95" in report for report in reports.values()):
        print("\n95 % intervals, bootstrap over the set's curves (hosts and non-hosts resampled apart)")
        for name, report in reports.items():
            print(f"{name:17}" + "".join(f"{'%.3f-%.3f' % tuple(report['interval_95'][metric]):>{width}}"
                                         for metric, width in zip(HEADLINE_NAMES, (9, 14, 13, 23))))
        print("network minus each, on the same resamples: mean [95 % interval]")
        for name, report in reports.items():
            if "network_minus_this" in report:
                cells = [report["network_minus_this"][metric] for metric in HEADLINE_NAMES]
                print(f"{'- ' + name:17}" + "  ".join(f"{cell['mean']:+.3f} [{cell['interval_95'][0]:+.3f}, "
                                                      f"{cell['interval_95'][1]:+.3f}]" for cell in cells))
    any_report = next(iter(reports.values()))
    labels = bin_labels(any_report["bins"]["snr"])
    print("\nRecall per transit S/N bin")
    print(f"{'':40}" + "".join(f"{label:>8}" for label in labels))
    print(f"{'hosts':40}" + "".join(f"{count:>8d}" for count in any_report["hosts_by"]["snr"]))
    recall_rows = [(f"{name}, {threshold}", entry["recall_by_snr"]) for name, report in reports.items()
                   for threshold, entry in report["thresholds"].items()]
    recall_rows += [(f"{name}, recovered", entry["recall_by_snr"]) for name, entry in recovery.items()]
    for row_name, recalls in recall_rows:
        print(f"{row_name:40}" + "".join("       -" if r is None else f"{r:8.2f}" for r in recalls))
    for name, entry in recovery.items():
        strong = "-" if entry["recall_snr_ge_12"] is None else f"{entry['recall_snr_ge_12']:.3f}"
        print(f"{name}: recovers {entry['recall']:.3f} of the {entry['hosts']} hosts, {strong} of those at "
              "S/N >= 12 (ephemeris matched, S/N >= 7.1, false alarms not counted)")
    middling = any_report["recall_by_snr_per_transit"]
    low, high = middling["snr_range"]
    print(f"\nRecall of the hosts of survey S/N {low:g}-{high:g} by the S/N of one transit, at the 1 % false-positive rate")
    print(f"{'':40}" + "".join(f"{label:>8}" for label in bin_labels(middling["bins"])))
    print(f"{'hosts':40}" + "".join(f"{count:>8d}" for count in middling["hosts"]))
    for name, report in reports.items():
        print(f"{name:40}" + "".join("       -" if r is None else f"{r:8.2f}"
                                     for r in report["recall_by_snr_per_transit"]["recall"]))
    print("\nFalse-positive rate per kind of non-host")
    kinds = [k for k in NEGATIVE_CLASSES if any_report["negatives_by_kind"].get(k)]
    short = {"eclipsing_binary": "EB", "diluted_eclipsing_binary": "dil.EB", "sensitivity_dropout": "dropout",
             "thruster_sawtooth": "sawtooth", "fast_rotator": "rotator"}
    print(f"{'':40}" + "".join(f"{short.get(k, k):>9}" for k in kinds))
    print(f"{'curves':40}" + "".join(f"{any_report['negatives_by_kind'][k]:>9d}" for k in kinds))
    for name, report in reports.items():
        for threshold, entry in report["thresholds"].items():
            print(f"{name + ', ' + threshold:40}" + "".join(f"{entry['false_positive_rate_by_kind'][k]:9.3f}"
                                                             for k in kinds))
    print("\nNon-hosts above the threshold of recall at precision 0.9: beside a closed-up gap, between two "
          "(the deepest point within 40 cadences), and the others by kind")
    print(f"{'':14}{'hosts':>7}{'non-hosts':>11}{'beside':>8}{'between':>9}" + "".join(f"{short.get(k, k):>9}" for k in kinds))
    for name, report in reports.items():
        if "false_positives_at_precision_0.9" in report:
            entry = report["false_positives_at_precision_0.9"]
            print(f"{name:14}{entry['hosts']:7d}{entry['non_hosts']:11d}{entry['beside_a_gap']:8d}"
                  f"{entry['between_two_gaps']:9d}" + "".join(f"{entry['others_by_kind'][k]:9d}" for k in kinds))
    print("\nWhat the headline figures ask: each network's, had it ranked every host of survey S/N at or above a "
          "floor first (the rest as scored), and also every non-host whose deepest point lies at a closed-up gap last")
    print(f"{'':22}{'hosts':>6}{'ROC AUC':>9}{'PR AUC':>8}{'recall@P0.9':>13}   {'gap dips last:':>14}{'ROC AUC':>9}"
          f"{'PR AUC':>8}{'recall@P0.9':>13}")
    for name, report in reports.items():
        for entry in report.get("headline_with_hosts_first", []):
            last = entry["gap_dips_last"]
            print(f"{name + ', S/N >= %g' % entry['snr_floor']:22}{entry['hosts_ranked_first']:6d}"
                  f"{entry['roc_auc']:9.3f}{entry['pr_auc']:8.3f}{entry['recall_at_precision_0.9']:13.3f}   "
                  f"{last['non_hosts']:14d}"
                  f"{last['roc_auc']:9.3f}{last['pr_auc']:8.3f}{last['recall_at_precision_0.9']:13.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--test-rows", type=int, default=5000)
    parser.add_argument("--test-seed", type=int, default=2026)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", type=Path, nargs="+",
                        help="score this existing run folder instead of training; several: the mean of their networks")
    parser.add_argument("--network-only", action="store_true",
                        help="leave out the BLS search, the oracle, the injection-recovery and the ideal observer "
                             "(minutes on a large set; cached per set)")
    parser.add_argument("--baseline", type=Path,
                        help="also score this run folder's network on the same curves, with paired differences")
    parser.add_argument("--resamples", type=int, default=1000,
                        help="bootstrap resamples of the curves for the 95 %% intervals (0: none)")
    args = parser.parse_args()

    import plots
    from settings import Paths

    walls, own, folders = [], [], []
    if args.run is not None:
        runs = args.run
        report = json.loads((Paths(results_dir=runs[0] / "results").metrics_file).read_text())
    else:
        for _ in range(args.repeats):
            wall, run, folder = train_default(args.epochs)
            walls.append(wall)
            folders.append(folder)
            own.append(json.loads((Paths(results_dir=run / "results").metrics_file).read_text()))
        if any(entry["test"] != own[0]["test"] for entry in own):
            raise SystemExit(f"repeated default runs scored differently: {[entry['test'] for entry in own]}")
        report, runs = own[0], [run]
    reports, scores, truth, recovery = score(runs, args)
    if args.resamples > 0:
        add_intervals(reports, scores, truth, args.resamples)
    for folder in folders:
        folder.cleanup()
    wall = float(np.median(walls)) if walls else None
    result = {"epochs_trained": report["epochs_trained"], "best_epoch": report["best_epoch"], "wall_seconds": wall,
              "wall_seconds_runs": walls, "repeats": len(walls),
              "scored_runs": [str(run) for run in args.run] if args.run else None,
              "own_test_split": report["test"], "other_seed_test": reports, "injection_recovery": recovery,
              "test_seed": args.test_seed,
              "test_rows": args.test_rows, "baseline_run": str(args.baseline) if args.baseline else None,
              "bootstrap_resamples": args.resamples, "machine": machine()}
    print_tables(reports, recovery)
    test = report["test"]
    print(f"\nrun's own test split: ROC AUC {test['roc_auc']:.3f}, PR AUC {test['pr_auc']:.3f}, recall@P0.9 "
          f"{test['recall_at_precision_0.9']:.3f} ({test['positives']} hosts)")
    timing = f"; run took {wall:.0f} s (median of {len(walls)}, identical scores)" if walls else ""
    print(f"best model from epoch {report['best_epoch']} of {report['epochs_trained']}{timing}; {result['machine']}")
    name = "quality" if (args.test_rows, args.test_seed) == (5000, 2026) else f"quality_{args.test_rows}_{args.test_seed}"
    figure = ROOT / "results" / "bench" / f"{name}_completeness.png"
    plots.completeness(reports, figure, recovery)
    print(f"written to {write_result(name, result)} and {figure}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The ideal observer's search run on the curves themselves: how much of its ceiling is its white noise.

``bench/quality.py``'s ceiling for a Kaggle-layout row, "ideal, cadences", is a blind box
search over the cadences that is told where each closed-up gap is
(``transit_search.segmented_search_snr``), its false alarms measured in Gaussian white noise
and every other signal (binaries, flares, gap residuals, the star's own variability) refused.
This runs that same search on the unseen set's curves as the network reads them (the first
channel of the run's preprocessing), each row told its gaps: every host, and a random sample of
the non-hosts, weighted up to their count in the set. Each curve scores the highest S/N the
search finds in it. Three rows of figures, on the same curves and weights:
    search        the search on the curves, every non-host as it is;
    stars' noise  the same, every non-host refused (ranked last) but the quiet and spotted
                  stars: what is left against the ceiling is the stars' own noise and the
                  residuals of their gaps, not the impostors the ceiling refuses;
    network       the run's best model (``--run``), on the same curves and weights.
The search takes about two seconds a curve on a core, so the non-hosts are sampled (``--non-hosts``).
``--mask-gaps N`` sets the cadences within N of each closed-up gap to the detrended level (0)
before the search, taking out the residuals of the trend fitted across each gap, which the
ceiling refuses and a search told the gaps could leave out.

    python3 bench/search_on_curves.py --run DIR                 # 200 hosts + 400 non-hosts: ~10 min on 2 cores
    python3 bench/search_on_curves.py --run DIR --mask-gaps 40  # the same without the gaps' residuals
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import machine, write_result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder: its preprocessing and best model")
    parser.add_argument("--test-rows", type=int, default=5000)
    parser.add_argument("--test-seed", type=int, default=2026)
    parser.add_argument("--non-hosts", type=int, default=400, help="non-hosts searched, drawn at random (seed 0)")
    parser.add_argument("--mask-gaps", type=int, default=0, metavar="N",
                        help="set the cadences within N of each closed-up gap to 0 before the search (0: none)")
    args = parser.parse_args()

    from sklearn.metrics import average_precision_score, roc_auc_score

    from completeness import fresh_built_in_set, negative_classes
    from evaluation import recall_at_precision
    from memory import available_cores
    from preprocessing import PreprocessingConfig
    from quality import network_scores
    from settings import Paths
    from synthetic_data import SyntheticConfig
    from transit_search import masked_at_gaps, segmented_peak_snr

    config = PreprocessingConfig.from_json_file(Paths(models_dir=args.run / "models").preprocessor_file)
    truth, inputs = fresh_built_in_set(args.test_rows, args.test_seed, SyntheticConfig().positive_fraction, config)
    host = truth.label == 2
    non_hosts = np.flatnonzero(~host)
    if not 0 < args.non_hosts <= non_hosts.size:
        raise SystemExit(f"--non-hosts must be between 1 and the set's {non_hosts.size} non-hosts, "
                         f"got {args.non_hosts}")
    rows = np.sort(np.concatenate([np.flatnonzero(host),
                                   np.random.default_rng(0).choice(non_hosts, args.non_hosts, replace=False)]))
    is_host = host[rows]
    weight = np.where(is_host, 1.0, non_hosts.size / args.non_hosts)
    started = time.perf_counter()
    curves = masked_at_gaps(inputs[rows], truth.time[rows], args.mask_gaps) if args.mask_gaps else inputs[rows]
    found = segmented_peak_snr(curves, truth.time[rows], available_cores())
    seconds = time.perf_counter() - started
    kinds = negative_classes(truth.kind, truth.spot_amplitude)[rows]
    stars_noise = is_host | np.isin(kinds, ["quiet", "spotted"])
    # The run's own preprocessing is the set's, so only the searched curves need scoring.
    network, _, _ = network_scores(args.run, truth, {config: inputs[rows]})
    scorers = {"search": found, "stars' noise": np.where(stars_noise, found, found.min() - 1.0), "network": network}

    figures = {}
    for name, values in scorers.items():
        figures[name] = {
            "roc_auc": float(roc_auc_score(is_host, values, sample_weight=weight)),
            "pr_auc": float(average_precision_score(is_host, values, sample_weight=weight)),
            "recall_at_precision_0.9": recall_at_precision(is_host, values, 0.9, sample_weight=weight)}
    snr = np.nan_to_num(truth.snr[rows])
    # The search's highest S/N in the stars without planets (in white noise: 5.6-6.6 in the median),
    # and in the hosts it must find above them.
    percentiles = {kind: np.percentile(found[~is_host & (kinds == kind)], [50, 90, 99]).tolist()
                   for kind in ("quiet", "spotted") if np.any(~is_host & (kinds == kind))}
    hosts_by_snr = {f"{low:g}-{high:g}": float(np.median(found[is_host & (snr >= low) & (snr < high)]))
                    for low, high in ((7, 10), (10, 15), (15, np.inf)) if np.any(is_host & (snr >= low) & (snr < high))}

    masked = f", the cadences within {args.mask_gaps} of each gap set to 0" if args.mask_gaps else ""
    print(f"{int(is_host.sum())} hosts and {args.non_hosts} of the {non_hosts.size} non-hosts (weighted "
          f"{non_hosts.size / args.non_hosts:.1f} each) of {args.test_rows} curves, seed {args.test_seed}{masked}; "
          f"the search took {seconds:.0f} s")
    print(f"{'':15}{'ROC AUC':>9}{'PR AUC':>9}{'recall@P0.9':>13}")
    for name, entry in figures.items():
        print(f"{name:15}{entry['roc_auc']:9.3f}{entry['pr_auc']:9.3f}{entry['recall_at_precision_0.9']:13.3f}")
    print("the search's highest S/N, median / 90th / 99th percentile: "
          + "; ".join(f"{kind} stars {' / '.join(f'{v:.1f}' for v in values)}" for kind, values in percentiles.items())
          + "; median over the hosts of survey S/N " + ", ".join(f"{k}: {v:.1f}" for k, v in hosts_by_snr.items()))
    result = {"run": str(args.run), "test_rows": args.test_rows, "test_seed": args.test_seed,
              "mask_gaps": args.mask_gaps, "hosts": int(is_host.sum()), "non_hosts_searched": args.non_hosts,
              "search_seconds": seconds,
              "figures": figures, "noise_peak_percentiles_50_90_99": percentiles,
              "host_median_snr_by_survey_snr": hosts_by_snr, "machine": machine()}
    name = ("search_on_curves" + ("" if (args.test_rows, args.test_seed) == (5000, 2026) else
                                  f"_{args.test_rows}_{args.test_seed}")
            + (f"_masked_{args.mask_gaps}" if args.mask_gaps else ""))
    print(f"written to {write_result(name, result)}")


if __name__ == "__main__":
    main()

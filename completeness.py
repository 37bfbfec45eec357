"""Completeness as transit surveys measure it: injection-recovery on curves whose truth is known.

The built-in generator records each curve's kind and true parameters (S/N, period, depth,
duration, transits in the window), so a scorer (the network, a BLS search, the matched-filter
oracle) can be read the way survey pipelines are: recall as a function of the transit's
signal-to-noise ratio (and of period, depth and the number of transits), and the
false-positive rate of each kind of star that is not a host. Both at two thresholds: the one
chosen on the validation split, and the one that lets 1 % of this set's non-hosts through.

Anchor: the Kepler pipeline (DR25) detects at a multiple-event statistic of 7.1 and recovers
about 90-95 % of strong signals (Christiansen 2020), its multiple-event statistic measured
against the star's CDPP, the noise on the transit's timescale. The S/N here is its analogue
(``synthetic_data``'s ``snr``): sqrt(sum(signal^2)) over the noise of the curve without its
transits on their timescale (``preprocessing.noise_on_timescale``), granulation included. Up to
1.6 it was counted in white noise alone, which put transits buried in granulation (the oracle
measures S/N 1-5 on some of them) among the "strong" ones; the truth file keeps that one too
(``snr_white``).

Stage [7/7] calls ``evaluate_built_in`` after every run trained on the built-in data: it draws a
fresh set from another seed, scores it and writes ``results/completeness.png`` and
``results/completeness.json`` (seconds). ``bench/quality.py`` does the same on a larger set with
the BLS baseline, the oracle and the ideal observer (``ideal_observer_scores``: the ceiling the
noise sets) beside the network, and reads how much of each headline figure
is the luck of the set (``bootstrap_headline``: 95 % intervals over resamples of its curves, and
paired differences between scorers on the same resamples).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SNR_BINS = (0.0, 7.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0, 100.0, np.inf)
PERIOD_BINS_DAYS = (0.0, 1.0, 3.0, 10.0, 32.0, np.inf)
TRANSIT_COUNT_BINS = (1, 2, 3, 5, 10, 30, np.inf)
DEPTH_BINS = (0.0, 3e-4, 1e-3, 3e-3, 1e-2, np.inf)
# The S/N of one transit (a host's S/N over the root of its transit count): below 2, only the
# transits' repetition shows them. Read among the hosts of middling S/N, where detectors differ.
SNR_PER_TRANSIT_BINS = (0.0, 1.0, 2.0, 4.0, 8.0, np.inf)
MIDDLING_SNR = (7.0, 20.0)
# Spot modulation above this relative amplitude makes a "spotted" star rather than a quiet one.
SPOTTED_AMPLITUDE = 1e-3
NEGATIVE_CLASSES = ("eclipsing_binary", "diluted_eclipsing_binary", "flares", "pulsator", "fast_rotator",
                    "sensitivity_dropout", "thruster_sawtooth", "quiet", "spotted")
FALSE_POSITIVE_RATE = 0.01
FALSE_POSITIVE_THRESHOLD = "1% false-positive rate"   # names of the two thresholds in a report
VALIDATION_THRESHOLD = "validation threshold"
STRONG_SNR = 12.0
# A non-host's deepest point this close to a closed-up gap is counted as the gap's; two gaps this
# close leave a short stretch at another level between them, a box like a single transit.
GAP_NEAR_CADENCES = 40
GAP_PAIR_CADENCES = 60
KEPLER_MES_THRESHOLD = 7.1  # the Kepler pipeline's detection threshold (multiple-event statistic)
# The survey S/N floors of ``headline_with_hosts_first``: from Kepler's threshold to where the
# network finds nearly every host.
DEMAND_SNR_FLOORS = (7.0, 10.0, 12.0, 15.0)


def negative_classes(kind: np.ndarray, spot_amplitude: np.ndarray) -> np.ndarray:
    """The generator's kinds, with its "quiet" stars split into quiet and spotted ones."""
    classes = np.asarray(kind).astype("<U32").copy()
    classes[(classes == "quiet") & (np.asarray(spot_amplitude) >= SPOTTED_AMPLITUDE)] = "spotted"
    return classes


def threshold_at_false_positive_rate(scores: np.ndarray, is_host: np.ndarray,
                                     rate: float = FALSE_POSITIVE_RATE) -> float:
    """The lowest threshold (score >= threshold is a detection) that passes at most ``rate`` of the non-hosts."""
    negatives = np.sort(np.asarray(scores)[~np.asarray(is_host, dtype=bool)])[::-1]
    allowed = int(np.floor(rate * negatives.size))
    # Just above the first non-host that would exceed the allowance.
    return float(np.nextafter(negatives[allowed], np.inf)) if allowed < negatives.size else float(-np.inf)


def _bin_masks(values: np.ndarray, edges) -> list[np.ndarray]:
    """One boolean mask per bin [low, high) of ``edges``."""
    return [(values >= low) & (values < high) for low, high in zip(edges[:-1], edges[1:])]


def completeness(scores: np.ndarray, truth, thresholds: dict[str, float]) -> dict:
    """Recall per S/N (period, depth, transit count) bin and false-positive rate per kind.

    Args:
        scores: [rows] higher means more likely a host.
        truth: ``synthetic_data.SyntheticCurves`` (label, kind, snr, period, depth,
            n_transits, spot_amplitude are used).
        thresholds: name -> threshold; a score at or above it is a detection.

    Returns:
        JSON-able dict: ROC AUC, PR AUC and recall at precision 0.9, then per threshold the
        binned recalls, the recall at S/N >= 12 and the false-positive rate of each kind.
    """
    from evaluation import classification_metrics

    scores = np.asarray(scores, dtype=np.float64)
    host = np.asarray(truth.label) == 2
    classes = negative_classes(truth.kind, truth.spot_amplitude)
    summary = classification_metrics(host.astype(int), scores, next(iter(thresholds.values())))
    report = {
        "curves": int(host.size), "hosts": int(host.sum()),
        "roc_auc": summary["roc_auc"], "pr_auc": summary["pr_auc"],
        "recall_at_precision_0.9": summary["recall_at_precision_0.9"],
        "bins": {"snr": _edges(SNR_BINS), "period_days": _edges(PERIOD_BINS_DAYS),
                 "transits": _edges(TRANSIT_COUNT_BINS), "depth": _edges(DEPTH_BINS)},
        "negatives_by_kind": {name: int((classes == name).sum()) for name in NEGATIVE_CLASSES},
        "thresholds": {},
    }
    # The hosts of each bin, by S/N, period, transit count and depth.
    bins = {key: _bin_masks(np.asarray(values, dtype=np.float64)[host], edges)
            for key, values, edges in (("snr", truth.snr, SNR_BINS), ("period_days", truth.period, PERIOD_BINS_DAYS),
                                       ("transits", truth.n_transits, TRANSIT_COUNT_BINS),
                                       ("depth", truth.depth, DEPTH_BINS))}
    report["hosts_by"] = {key: [int(mask.sum()) for mask in masks] for key, masks in bins.items()}
    strong = strong_hosts(truth)
    for name, threshold in thresholds.items():
        detected = scores >= threshold
        entry = {"threshold": float(threshold), "recall": float(detected[host].mean()),
                 "false_positive_rate": float(detected[~host].mean())}
        for key, masks in bins.items():
            entry[f"recall_by_{key}"] = [float(detected[host][mask].mean()) if mask.any() else None for mask in masks]
        entry["recall_snr_ge_12"] = float(detected[strong].mean()) if strong.any() else None
        entry["false_positive_rate_by_kind"] = {
            kind: (float(detected[classes == kind].mean()) if (classes == kind).any() else None)
            for kind in NEGATIVE_CLASSES}
        report["thresholds"][name] = entry
    return report


def injection_recovery(truth, inputs: np.ndarray, time_stamps: bool = True, workers: int = 1,
                       found=None) -> np.ndarray:
    """[hosts] bool: which of the set's planets a blind transit search recovers, as survey pipelines
    count an injection recovered (Kepler's DR25 detection efficiency among them).

    Each host's curve is searched with no knowledge of its planet (``transit_search.search``, BLS
    over 0.5-32 days); the planet is recovered when the strongest dip found matches its ephemeris
    (``transit_search.matches_ephemeris``: period or a harmonic within 1 %, an event on one of its
    transits) at a matched-filter S/N of at least ``KEPLER_MES_THRESHOLD``. False alarms are not
    counted, so this is the most such a search can find, at any precision.

    Args:
        truth: ``synthetic_data.SyntheticCurves`` (label, period, epoch, duration, time are used).
        inputs: [rows, cadences(, channels)] the set's preprocessed curves (the first channel is searched).
        time_stamps: search over the generator's true time stamps (its gaps' time skipped), as a
            survey pipeline does; False: over the cadences, as a Kaggle-layout row allows (a
            planet's phase then jumps at each closed-up gap), its events read at the true time
            of the cadence they fall on.
        workers: processes for the search.
        found: ``transit_search.SearchResult`` of every curve of the set over the same times,
            where one is at hand (the classical baseline searches the cadences); None: the hosts
            are searched here.
    """
    import transit_search
    from synthetic_data import CADENCE_DAYS

    host = np.flatnonzero(np.asarray(truth.label) == 2)
    curves = transit_search.first_channel(inputs)[host]
    true_time = np.asarray(truth.time, dtype=np.float64)[host]
    searched = true_time if time_stamps else transit_search.cadence_times(curves.shape)
    found = transit_search.search(curves, workers=workers, times=searched) if found is None else found.take(host)
    snr = transit_search.matched_filter_snr(curves, found.period, found.duration, searched)
    epoch = found.epoch
    if not time_stamps:
        cadence = np.clip(np.rint(found.epoch / CADENCE_DAYS).astype(int), 0, curves.shape[1] - 1)
        epoch = true_time[np.arange(host.size), cadence]
    matched = transit_search.matches_ephemeris(found.period, epoch, truth.period[host], truth.epoch[host],
                                               truth.duration[host])
    return matched & (snr >= KEPLER_MES_THRESHOLD)


def recovery_report(recovered: np.ndarray, truth) -> dict:
    """Recall of ``injection_recovery``'s hosts, overall, per S/N bin and at S/N >= ``STRONG_SNR``.

    Args:
        recovered: [hosts] bool, in the order of the set's hosts.
        truth: ``synthetic_data.SyntheticCurves`` (label and snr are used).
    """
    recovered = np.asarray(recovered, dtype=bool)
    host = np.asarray(truth.label) == 2
    masks = _bin_masks(np.nan_to_num(np.asarray(truth.snr, dtype=np.float64)[host]), SNR_BINS)
    strong = strong_hosts(truth)[host]
    return {"hosts": int(recovered.size), "recall": float(recovered.mean()) if recovered.size else None,
            "recall_by_snr": [float(recovered[mask].mean()) if mask.any() else None for mask in masks],
            "recall_snr_ge_12": float(recovered[strong].mean()) if strong.any() else None}


def recall_by_snr_per_transit(detected: np.ndarray, truth, snr_range=MIDDLING_SNR) -> dict:
    """Recall of the hosts of survey S/N in ``snr_range`` by the S/N of one transit
    (``SNR_PER_TRANSIT_BINS``): does a detector find many shallow transits as it finds a few deep ones?

    Args:
        detected: [rows] bool, a scorer's detections (e.g. at the 1 % false-positive threshold).
        truth: ``synthetic_data.SyntheticCurves`` (label, snr and n_transits are used).
        snr_range: [low, high) of the hosts' survey S/N.

    Returns:
        {"bins": edges (None = infinity), "hosts": [per bin], "recall": [per bin, None where empty]}
    """
    host = np.asarray(truth.label) == 2
    snr = np.nan_to_num(np.asarray(truth.snr, dtype=np.float64))
    chosen = host & (snr >= snr_range[0]) & (snr < snr_range[1])
    per_transit = snr[chosen] / np.sqrt(np.maximum(np.asarray(truth.n_transits)[chosen], 1))
    masks = _bin_masks(per_transit, SNR_PER_TRANSIT_BINS)
    found = np.asarray(detected, dtype=bool)[chosen]
    return {"bins": _edges(SNR_PER_TRANSIT_BINS), "snr_range": list(snr_range),
            "hosts": [int(mask.sum()) for mask in masks],
            "recall": [float(found[mask].mean()) if mask.any() else None for mask in masks]}


def effective_trials(peak_snr: np.ndarray) -> float:
    """How many independent trials a search makes, from the highest S/N it finds in pure white noise.

    The highest of N independent standard normals is below z with probability Phi(z)^N; given
    the peaks z_1..z_K of K noise curves (``transit_search.white_noise_peak_snr``), the maximum
    likelihood N is -K / sum(ln Phi(z_k)).

    >>> round(effective_trials(np.array([0.0])), 4)   # Phi(0)^N = 1/2 at N = 1/ln 2
    1.4427
    """
    from scipy.special import log_ndtr

    peak_snr = np.asarray(peak_snr, dtype=np.float64)
    return float(-peak_snr.size / np.sum(log_ndtr(peak_snr)))


def ideal_observer_scores(snr: np.ndarray, is_host: np.ndarray, trials: float, seed: int) -> np.ndarray:
    """[rows] the scores of an ideal blind observer of the set: the most any detector could do
    if the noise on a transit's timescale were Gaussian and every other signal were refused.

    The observer searches each curve over ``trials`` independent ephemerides (a blind search's
    count: ``effective_trials``) with the exact transit shape, and scores it by the highest S/N.
    Each trial's S/N is a standard normal, plus, at a host's true ephemeris, the transit's own S/N
    as a survey quotes it (``snr``, against the noise on the transit's timescale, as Kepler's
    multiple-event statistic is). So a non-host scores the highest of ``trials`` normals and a
    host the higher of that and snr + a normal: a planet of S/N 3 ranks among the non-hosts, as
    it must. Binaries, flares, gaps and the star's own variability are refused perfectly, and the
    trials are told the true time stamps (``transit_search.white_noise_peak_snr``), so the
    figures are a ceiling: what the physics of the set allows, not what a real detector reaches.
    (One assumption runs the other way: a detector that whitened the star's red noise could see a
    transit above its survey S/N.)

    Args:
        snr: [rows] the hosts' survey S/N (non-hosts: anything, NaN included).
        is_host: [rows] bool.
        trials: independent trials per curve.
        seed: the same seed gives the same scores.
    """
    from scipy.stats import norm

    is_host = np.asarray(is_host, dtype=bool)
    rng = np.random.default_rng([seed, 41])
    # The highest of `trials` standard normals, by its distribution function Phi(z)^trials.
    highest_noise = norm.isf(-np.expm1(np.log(rng.random(is_host.size)) / trials))
    return _best_of_noise_and_transit(snr, is_host, highest_noise, rng)


def ideal_observer_scores_measured(snr: np.ndarray, is_host: np.ndarray, group: np.ndarray, noise_peaks: np.ndarray,
                                   noise_group: np.ndarray, seed: int) -> np.ndarray:
    """[rows] ``ideal_observer_scores`` with each curve's highest noise peak drawn from measured
    ones instead of the highest of independent normals: for a search whose peaks in noise that
    model does not describe (``transit_search.segmented_search_snr``, over a Kaggle-layout row's
    cadences, a phase of its own for each stretch between gaps: its peaks spread wider).

    Each curve draws from the peaks of the noise curves of its own ``group`` (e.g. its number of
    stretches between gaps, which sets how many trials it makes), by the same uniform draws as
    ``ideal_observer_scores`` of the same seed, and hosts read the same normals at their transits,
    so the two observers' scores are paired.

    Args:
        snr, is_host: as ``ideal_observer_scores``.
        group: [rows] each curve's group.
        noise_peaks: [curves] the highest S/N of the search in white noise on curves cut as the set's.
        noise_group: [curves] the group of each of those curves; every group of ``group`` among them.
        seed: the same seed gives the same scores.

    >>> ideal_observer_scores_measured(np.array([20.0, np.nan]), np.array([True, False]), np.array([1, 2]),
    ...                                np.array([5.0, 6.0, 7.0]), np.array([1, 2, 2]), seed=0)[1] in (6.0, 7.0)
    True
    """
    is_host = np.asarray(is_host, dtype=bool)
    group, noise_group = np.asarray(group), np.asarray(noise_group)
    noise_peaks = np.asarray(noise_peaks, dtype=np.float64)
    rng = np.random.default_rng([seed, 41])
    uniform = rng.random(is_host.size)
    highest_noise = np.empty(is_host.size)
    for value in np.unique(group):
        peaks = np.sort(noise_peaks[noise_group == value])
        if not peaks.size:
            raise ValueError(f"no noise curve of group {value.item()!r} to draw the peaks of its curves from")
        rows = group == value
        # The empirical distribution's inverse at each uniform draw.
        highest_noise[rows] = peaks[np.minimum((uniform[rows] * peaks.size).astype(np.int64), peaks.size - 1)]
    return _best_of_noise_and_transit(snr, is_host, highest_noise, rng)


def _best_of_noise_and_transit(snr, is_host, highest_noise, rng) -> np.ndarray:
    """A host's score: the higher of its noise peak and its transit's S/N plus a normal; a
    non-host's: its noise peak."""
    at_transit = np.nan_to_num(np.asarray(snr, dtype=np.float64)) + rng.standard_normal(is_host.size)
    return np.where(is_host, np.maximum(highest_noise, at_transit), highest_noise)


def gap_of_deepest_point(time: np.ndarray, deepest: int) -> str | None:
    """Where a curve's deepest preprocessed point (``deepest``, a cadence) lies against the
    closed-up gaps of its time stamps (``time``, which a Kaggle-layout row does not carry):
    "beside" one gap, "between" two that lie within ``GAP_PAIR_CADENCES`` of each other (a
    short stretch at another level, a box like a single transit), or None, farther than
    ``GAP_NEAR_CADENCES`` from every gap.

    >>> time = np.concatenate([np.arange(100.0), 105 + np.arange(30.0), 140 + np.arange(270.0)])
    >>> [gap_of_deepest_point(time, cadence) for cadence in (90, 300, 125)]
    ['between', None, 'between']
    >>> gap_of_deepest_point(np.concatenate([np.arange(100.0), 105 + np.arange(300.0)]), 90)
    'beside'
    """
    from transit_search import gap_ends

    gaps = gap_ends(time)
    if not gaps.size:
        return None
    distance = np.abs(gaps - deepest)
    if distance.min() > GAP_NEAR_CADENCES:
        return None
    nearest = gaps[np.argmin(distance)]
    paired = np.any((np.abs(gaps - nearest) <= GAP_PAIR_CADENCES) & (gaps != nearest))
    return "between" if paired else "beside"


def false_positives_at_precision(scores: np.ndarray, truth, deepest: np.ndarray, precision: float = 0.9) -> dict:
    """The non-hosts above the threshold of recall at ``precision``, which decide that figure and
    most of PR AUC: how many, how many have their deepest preprocessed point (``deepest``, a
    cadence per curve) at a closed-up gap of the generator's rows, beside one or between two
    (``gap_of_deepest_point``), and the kinds of the others.
    """
    from evaluation import threshold_at_precision

    host = truth.label == 2
    _, threshold = threshold_at_precision(host, scores, precision)
    above = np.flatnonzero((scores >= threshold) & ~host)
    kinds = negative_classes(truth.kind, truth.spot_amplitude)
    at_gap = {"beside": 0, "between": 0}
    others = {kind: 0 for kind in NEGATIVE_CLASSES}
    for row in above:
        place = gap_of_deepest_point(truth.time[row], deepest[row])
        if place is None:
            others[kinds[row]] += 1
        else:
            at_gap[place] += 1
    return {"precision": precision, "threshold": threshold, "hosts": int(np.sum(scores[host] >= threshold)),
            "non_hosts": int(above.size), "beside_a_gap": at_gap["beside"], "between_two_gaps": at_gap["between"],
            "others_by_kind": others}


def headline_with_hosts_first(scores: np.ndarray, truth, deepest: np.ndarray,
                              snr_floors=DEMAND_SNR_FLOORS) -> list[dict]:
    """What the headline figures ask of a scorer: its ROC AUC, PR AUC and recall at precision 0.9
    if every host of survey S/N at or above each floor were ranked above every other curve, the
    rest as scored; and the same with every non-host whose deepest preprocessed point
    (``deepest``) lies at a closed-up gap (``gap_of_deepest_point``) ranked below every curve
    too. A target above the second figure at a floor cannot be met without finding hosts below
    that floor at a precision the scorer does not reach there.

    Returns:
        One entry per floor: ``snr_floor``, ``hosts_ranked_first``, the three figures, and
        ``gap_dips_last`` (the count of those non-hosts and the three figures with them last).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    from evaluation import recall_at_precision

    host = np.asarray(truth.label) == 2
    labels = host.astype(int)
    snr = np.nan_to_num(np.asarray(truth.snr, dtype=np.float64))
    scores = np.asarray(scores, dtype=np.float64)
    at_gap = np.array([not host[row] and gap_of_deepest_point(truth.time[row], deepest[row]) is not None
                       for row in range(host.size)], dtype=bool)

    def figures(values: np.ndarray) -> dict:
        return {"roc_auc": float(roc_auc_score(labels, values)),
                "pr_auc": float(average_precision_score(labels, values)),
                "recall_at_precision_0.9": float(recall_at_precision(labels, values, 0.9))}

    entries = []
    for floor in snr_floors:
        first = host & (snr >= floor)
        promoted = np.where(first, scores.max() + 1.0, scores)
        entries.append({"snr_floor": float(floor), "hosts_ranked_first": int(first.sum()), **figures(promoted),
                        "gap_dips_last": {"non_hosts": int(at_gap.sum()),
                                          **figures(np.where(at_gap, scores.min() - 1.0, promoted))}})
    return entries


def strong_hosts(truth) -> np.ndarray:
    """[rows] bool: the hosts whose transit S/N is at least ``STRONG_SNR`` (non-hosts have none)."""
    snr = np.nan_to_num(np.asarray(truth.snr, dtype=np.float64))
    return (np.asarray(truth.label) == 2) & (snr >= STRONG_SNR)


def headline_metrics(scores: np.ndarray, is_host: np.ndarray, is_strong: np.ndarray,
                     rate: float = FALSE_POSITIVE_RATE) -> np.ndarray:
    """The four headline figures of a scorer on a set, as ``completeness`` computes them.

    Args:
        scores: [rows] higher means more likely a host.
        is_host: [rows] bool.
        is_strong: [rows] bool, the hosts with S/N >= ``STRONG_SNR`` (``strong_hosts``).
        rate: the false-positive rate that sets the threshold of the strong hosts' recall.

    Returns:
        float64 [4]: ROC AUC, PR AUC, recall at precision 0.9, and the recall of the strong
        hosts at the threshold that passes ``rate`` of the non-hosts (NaN without strong hosts).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    from evaluation import recall_at_precision

    labels = np.asarray(is_host).astype(int)
    threshold = threshold_at_false_positive_rate(scores, is_host, rate)
    strong = (scores[is_strong] >= threshold).mean() if is_strong.any() else np.nan
    return np.array([roc_auc_score(labels, scores), average_precision_score(labels, scores),
                     recall_at_precision(labels, scores, 0.9), strong])


HEADLINE_NAMES = ("roc_auc", "pr_auc", "recall_at_precision_0.9", "recall_snr_ge_12")


def bootstrap_headline(scores: dict[str, np.ndarray], truth, resamples: int = 1000, seed: int = 0) -> dict:
    """The headline figures of each scorer on the same bootstrap resamples of the set's curves.

    Each resample draws the hosts from the hosts and the non-hosts from the non-hosts, with
    replacement (the set's host fraction is its design, not a random draw); the 1 % threshold is
    chosen anew on each. Every scorer is read on the same resamples, so a difference between two
    scorers has its own interval (``interval`` of the difference of their rows): tighter than
    either scorer's, because most of a set's luck is shared.

    Args:
        scores: name -> [rows] scores of the same curves.
        truth: ``synthetic_data.SyntheticCurves`` (label and snr are used).
        resamples: how many resamples.
        seed: of the resampling; the same seed gives the same resamples.

    Returns:
        name -> float64 [resamples, 4]: the ``headline_metrics`` of each resample, in
        ``HEADLINE_NAMES`` order.
    """
    host, strong = np.asarray(truth.label) == 2, strong_hosts(truth)
    scores = {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}
    hosts, others = np.flatnonzero(host), np.flatnonzero(~host)
    rng = np.random.default_rng([seed, 31])
    results = {name: np.empty((resamples, len(HEADLINE_NAMES))) for name in scores}
    for number in range(resamples):
        rows = np.concatenate([rng.choice(hosts, hosts.size), rng.choice(others, others.size)])
        for name, values in scores.items():
            results[name][number] = headline_metrics(values[rows], host[rows], strong[rows])
    return results


def interval(samples: np.ndarray, level: float = 0.95) -> np.ndarray:
    """The central ``level`` percentile interval of each column of ``samples`` [resamples, k]: [k, 2]."""
    tail = 50.0 * (1.0 - level)
    return np.nanpercentile(np.asarray(samples, dtype=np.float64), [tail, 100.0 - tail], axis=0).T


def _edges(edges) -> list:
    return [None if np.isinf(e) else float(e) for e in edges]


def bin_labels(edges: list) -> list[str]:
    """'7-10', '100+' style labels of bins given by their edges (None = infinity)."""
    labels = []
    for low, high in zip(edges[:-1], edges[1:]):
        low_text = f"{low:g}"
        labels.append(f"{low_text}+" if high is None else f"{low_text}-{high:g}")
    return labels


def log_report(report: dict, title: str) -> None:
    """The report as a short table in the log."""
    log.info("%s: %d curves, %d planet hosts; ROC AUC %.3f, PR AUC %.3f, recall at precision 0.9 %.3f",
             title, report["curves"], report["hosts"], report["roc_auc"], report["pr_auc"],
             report["recall_at_precision_0.9"])
    labels = bin_labels(report["bins"]["snr"])
    log.info("  %-32s %s", "S/N bin", " ".join(f"{label:>7}" for label in labels))
    log.info("  %-32s %s", "hosts", " ".join(f"{count:>7d}" for count in report["hosts_by"]["snr"]))
    for name, entry in report["thresholds"].items():
        cells = " ".join("      -" if r is None else f"{r:7.2f}" for r in entry["recall_by_snr"])
        log.info("  %-32s %s", f"recall, {name}", cells)
    for name, entry in report["thresholds"].items():
        kinds = ", ".join(f"{kind} {rate:.3f}" for kind, rate in entry["false_positive_rate_by_kind"].items()
                          if rate is not None)
        log.info("  false-positive rate, %s (threshold %.3f): %s", name, entry["threshold"], kinds)


def fresh_built_in_set(rows: int, seed: int, positive_fraction: float, preprocessing):
    """(truth, model inputs) of fresh built-in curves, loaded and preprocessed as training curves are.

    Loading puts every curve on the model's grid (``datasets.rows_onto_grid``: a no-op at the
    default 3197 cadences); with a shorter window, a curve is scored on its first window.
    """
    from synthetic_data import generate_light_curves

    truth = generate_light_curves(rows, seed, positive_fraction=positive_fraction)
    return truth, built_in_inputs(truth, preprocessing)


def built_in_inputs(truth, preprocessing):
    """The model inputs of generated curves (``fresh_built_in_set``'s), preprocessed with ``preprocessing``."""
    from datasets import rows_onto_grid
    from preprocessing import preprocess

    windows, row = rows_onto_grid(truth.flux.astype(np.float32), preprocessing)
    return preprocess(windows[np.unique(row, return_index=True)[1]], preprocessing)


def evaluate_built_in(model, preprocessing, threshold: float, seed: int, rows: int, report_file: Path) -> dict:
    """Stage [7/7] on built-in data: injection-recovery on a fresh set, plot and JSON.

    The set is drawn from seed ``seed + 1000`` (never trained, validated or tested on) with a
    quarter of the curves hosts, so every S/N bin holds enough of them; the non-hosts keep the
    generator's mix of kinds. Writes ``report_file`` (JSON) and ``completeness.png`` beside it.
    """
    import atomic_io
    import plots
    from model import predict_scores

    truth, inputs = fresh_built_in_set(rows, seed + 1000, 0.25, preprocessing)
    scores = predict_scores(model, inputs)
    host = truth.label == 2
    thresholds = {VALIDATION_THRESHOLD: threshold,
                  FALSE_POSITIVE_THRESHOLD: threshold_at_false_positive_rate(scores, host)}
    report = completeness(scores, truth, thresholds) | {"seed": seed + 1000}
    atomic_io.write_json(Path(report_file), report)
    plots.write_all({"completeness": lambda p: plots.completeness({"network": report}, p)}, Path(report_file).parent)
    log_report(report, f"Injection-recovery on fresh built-in curves (seed {seed + 1000})")
    return report

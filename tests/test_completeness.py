"""Injection, the classical search, and completeness: known answers on small series."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from augmentation import SplitConfig, inject_planets, split_and_augment
from completeness import (FALSE_POSITIVE_THRESHOLD, bootstrap_headline, completeness, effective_trials,
                          false_positives_at_precision, headline_metrics, headline_with_hosts_first,
                          ideal_observer_scores, ideal_observer_scores_measured, injection_recovery,
                          interval, negative_classes, recall_by_snr_per_transit, recovery_report,
                          threshold_at_false_positive_rate)
from synthetic_data import (CADENCE_DAYS, SyntheticConfig, generate_light_curves, truth_file,
                            write_synthetic_dataset)
import transit_search


def test_threshold_at_one_percent_passes_exactly_one_percent_of_non_hosts():
    scores = np.concatenate([np.linspace(0.0, 0.99, 200), [0.5, 0.6]])
    is_host = np.array([False] * 200 + [True, True])
    threshold = threshold_at_false_positive_rate(scores, is_host, 0.01)
    assert (scores[:200] >= threshold).sum() == 2  # 1 % of 200
    assert 0.98 < threshold < 0.985  # just above the third highest non-host


def test_recall_per_snr_bin_and_false_positives_per_kind_are_counted_by_hand():
    truth = SimpleNamespace(
        label=np.array([2, 2, 2, 2, 1, 1, 1, 1]),
        kind=np.array(["planet"] * 4 + ["eclipsing_binary", "quiet", "quiet", "flares"]),
        snr=np.array([5.0, 8.0, 13.0, 40.0] + [np.nan] * 4),
        period=np.array([0.7, 2.0, 5.0, 50.0] + [np.nan] * 4),
        depth=np.array([1e-4, 5e-4, 2e-3, 2e-2] + [np.nan] * 4),
        n_transits=np.array([90, 30, 12, 1, 0, 0, 0, 0]),
        spot_amplitude=np.array([1e-4] * 5 + [5e-4, 5e-3, 1e-4]))
    scores = np.array([0.1, 0.6, 0.7, 0.9, 0.8, 0.2, 0.65, 0.1])
    report = completeness(scores, truth, {"t": 0.5})
    entry = report["thresholds"]["t"]
    # S/N bins 0-7, 7-10, 10-12, 12-15, 15-20, 20-30, 30-50, ...: hosts at 5, 8, 13, 40.
    assert report["hosts_by"]["snr"][:7] == [1, 1, 0, 1, 0, 0, 1]
    assert entry["recall_by_snr"][:7] == [0.0, 1.0, None, 1.0, None, None, 1.0]
    assert entry["recall_snr_ge_12"] == 1.0
    assert entry["recall"] == 0.75 and entry["false_positive_rate"] == 0.5
    rates = entry["false_positive_rate_by_kind"]
    assert rates["eclipsing_binary"] == 1.0 and rates["spotted"] == 1.0 and rates["quiet"] == 0.0
    assert rates["flares"] == 0.0 and rates["pulsator"] is None
    assert list(negative_classes(truth.kind, truth.spot_amplitude)[5:7]) == ["quiet", "spotted"]
    json.dumps(report)  # JSON-able as written by stage 7


def test_false_positives_at_precision_are_counted_by_hand_beside_and_between_gaps():
    # Ten curves of 400 cadences; gaps (time jumps) after cadences 100 (all), and 130 (curves 7-9).
    time = np.tile(np.arange(400.0), (10, 1))
    time[:, 100:] += 5.0
    time[7:, 130:] += 5.0
    truth = SimpleNamespace(label=np.array([2, 2, 2, 2, 2, 1, 1, 1, 1, 1]), time=time,
                            kind=np.array(["planet"] * 5 + ["quiet", "eclipsing_binary", "quiet", "flares", "quiet"]),
                            spot_amplitude=np.zeros(10))
    deepest = np.array([0, 0, 0, 0, 0, 90, 300, 120, 300, 10])
    # Ranked: host, host, host, 5 (beside the gap), host, 7 (between the two), 6, 8, host, 9.
    scores = np.array([0.99, 0.98, 0.97, 0.90, 0.30, 0.95, 0.80, 0.85, 0.70, 0.10])
    # Precision 0.8 is reached last by the top 5 (4 hosts); 0.5 by the top 9 (all 5 hosts) and the
    # top 10, of which the higher threshold counts.
    entry = false_positives_at_precision(scores, truth, deepest, precision=0.8)
    assert entry["threshold"] == 0.90 and entry["hosts"] == 4 and entry["non_hosts"] == 1
    assert entry["beside_a_gap"] == 1 and entry["between_two_gaps"] == 0
    entry = false_positives_at_precision(scores, truth, deepest, precision=0.5)  # down to the fifth host
    assert entry["threshold"] == 0.30 and entry["hosts"] == 5 and entry["non_hosts"] == 4
    assert entry["beside_a_gap"] == 1 and entry["between_two_gaps"] == 1
    assert entry["others_by_kind"]["eclipsing_binary"] == 1 and entry["others_by_kind"]["flares"] == 1
    assert sum(entry["others_by_kind"].values()) == 2
    json.dumps(entry)


def test_headline_with_hosts_first_ranks_the_hosts_above_each_floor_first_and_the_gap_dips_last():
    # Ten curves of 400 cadences, a closed-up gap after cadence 100 in each. Hosts 0-3 (S/N 20,
    # 12, 8, 5); non-host 4 has its deepest point beside the gap, the others far from it.
    time = np.tile(np.arange(400.0), (10, 1))
    time[:, 100:] += 5.0
    truth = SimpleNamespace(label=np.array([2, 2, 2, 2, 1, 1, 1, 1, 1, 1]), time=time,
                            snr=np.array([20.0, 12.0, 8.0, 5.0] + [np.nan] * 6))
    deepest = np.array([0, 0, 0, 0, 90, 300, 300, 300, 300, 300])
    scores = np.array([0.9, 0.3, 0.2, 0.1, 0.95, 0.8, 0.6, 0.5, 0.4, 0.05])
    floor_7, floor_10 = headline_with_hosts_first(scores, truth, deepest, snr_floors=(7.0, 10.0))
    # S/N >= 10 first: host 0, host 1, non-hosts 4-8, host 2, host 3, non-host 9.
    assert floor_10["hosts_ranked_first"] == 2
    assert floor_10["pr_auc"] == pytest.approx((1 + 1 + 3 / 8 + 4 / 9) / 4)
    assert floor_10["roc_auc"] == pytest.approx(14 / 24)          # 6 + 6 + 1 + 1 of 4 x 6 pairs
    assert floor_10["recall_at_precision_0.9"] == 0.5
    # And non-host 4 last: hosts 0, 1, non-hosts 5-8, hosts 2, 3, non-hosts 9, 4.
    assert floor_10["gap_dips_last"]["non_hosts"] == 1
    assert floor_10["gap_dips_last"]["pr_auc"] == pytest.approx((1 + 1 + 3 / 7 + 4 / 8) / 4)
    assert floor_10["gap_dips_last"]["roc_auc"] == pytest.approx(16 / 24)
    # S/N >= 7 first: hosts 0-2, non-hosts 4-8, host 3, non-host 9.
    assert floor_7["hosts_ranked_first"] == 3 and floor_7["recall_at_precision_0.9"] == 0.75
    assert floor_7["pr_auc"] == pytest.approx((3 + 4 / 9) / 4) and floor_7["roc_auc"] == pytest.approx(19 / 24)
    json.dumps([floor_7, floor_10])


def _scored_set(rows, seed):
    """A set like the quality benchmark's: 4 % hosts, S/N 0-50, scores that rise with the S/N."""
    rng = np.random.default_rng(seed)
    label = np.where(rng.random(rows) < 0.04, 2, 1)
    snr = np.where(label == 2, rng.uniform(0.0, 50.0, rows), np.nan)
    scores = rng.normal(0.0, 1.0, rows) + np.nan_to_num(snr) / 8.0
    nan = np.full(rows, np.nan)
    truth = SimpleNamespace(label=label, snr=snr, kind=np.where(label == 2, "planet", "quiet"), period=nan, depth=nan,
                            n_transits=np.zeros(rows), spot_amplitude=np.zeros(rows))
    return truth, scores


def test_headline_metrics_are_completeness_figures_and_bootstrap_intervals_narrow_with_more_curves():
    truth, scores = _scored_set(3000, 0)
    host = truth.label == 2
    report = completeness(scores, truth, {FALSE_POSITIVE_THRESHOLD: threshold_at_false_positive_rate(scores, host)})
    figures = headline_metrics(scores, host, host & (np.nan_to_num(truth.snr) >= 12))
    assert figures.tolist() == [report["roc_auc"], report["pr_auc"], report["recall_at_precision_0.9"],
                                report["thresholds"][FALSE_POSITIVE_THRESHOLD]["recall_snr_ge_12"]]

    samples = bootstrap_headline({"a": scores, "same": scores.copy(), "shifted": scores + 0.5}, truth, resamples=100)
    assert samples["a"].shape == (100, 4)
    # Every scorer is read on the same resamples: a scorer against its copy differs by nothing,
    # and a score shifted by a constant ranks the same, so every figure agrees.
    assert np.array_equal(samples["a"], samples["same"]) and np.allclose(samples["a"], samples["shifted"])
    again = bootstrap_headline({"a": scores}, truth, resamples=100)
    assert np.array_equal(again["a"], samples["a"])  # the same seed, the same resamples
    bounds = interval(samples["a"])
    assert bounds.shape == (4, 2) and ((bounds[:, 0] <= figures) & (figures <= bounds[:, 1])).all()
    assert (bounds[:, 1] - bounds[:, 0] > 0).all()
    # Four times the curves: the ROC AUC's interval about half as wide (binomial-like noise).
    big_truth, big_scores = _scored_set(12000, 1)
    big_bounds = interval(bootstrap_headline({"a": big_scores}, big_truth, resamples=100)["a"])
    width, big_width = bounds[0, 1] - bounds[0, 0], big_bounds[0, 1] - big_bounds[0, 0]
    assert 0.3 < big_width / width < 0.75


@pytest.mark.parametrize("noise, spread", [("point_to_point", 0.08), ("transit_timescale", 0.3)])
def test_injected_planets_have_the_requested_signal_to_noise_in_the_curves_own_units(noise, spread):
    rng = np.random.default_rng(1)
    sigma = 37.0
    flux = (5000.0 + sigma * rng.standard_normal((40, 3197))).astype(np.float32)
    injected = inject_planets(flux, (20.0, 20.0), np.random.default_rng(2), noise=noise)
    signal = injected.astype(np.float64) - flux
    assert injected.dtype == np.float32 and (signal <= 1e-2).all()  # transits only take light away
    snr = np.sqrt((signal**2).sum(axis=1)) / sigma
    # White noise is the same on every timescale. Its level is estimated from the row (MAD of
    # 3196 point-to-point differences: about 2 % scatter per row; of the averages over a transit
    # duration, of fewer independent ones: more).
    assert np.median(snr) == pytest.approx(20.0, rel=0.03)
    np.testing.assert_allclose(snr, 20.0, rtol=spread)
    assert (np.abs(signal).max(axis=1) > 0).all()


def test_injections_count_granulation_on_the_transits_timescale_in_their_noise():
    from synthetic_data import _coloured_noise

    rng = np.random.default_rng(5)
    # White noise of 1 plus granulation of 3 on a 10-cadence (5-hour) timescale: the
    # cadence-to-cadence scatter hardly sees it, a transit of hours competes with it.
    flux = rng.standard_normal((40, 3197)) + 3.0 * _coloured_noise(rng, 40, 3197, np.full(40, 10.0))
    depth = {noise: (flux - inject_planets(flux, (20.0, 20.0), np.random.default_rng(2), noise=noise)).max(axis=1)
             for noise in ("point_to_point", "transit_timescale")}
    # The same planets (same generator), scaled by a noise about 3 times larger.
    assert np.median(depth["transit_timescale"] / depth["point_to_point"]) > 2.0


def test_injected_copies_come_from_training_non_hosts_and_count_as_hosts():
    curves = generate_light_curves(300, seed=5, positive_fraction=0.1)
    label = (curves.label == 2).astype(np.int8)
    config = SplitConfig(augment_copies=2, injected_fraction=0.5, injected_binary_fraction=0.0,
                         injected_gap_fraction=0.0)
    splits = split_and_augment(curves.flux.astype(np.float32), label, config, seed=3)
    train = splits["train"]
    original = ~train.augmented
    non_hosts = int((train.label[original] == 0).sum())
    hosts = int((train.label[original] == 1).sum())
    assert train.augmented.sum() == 2 * hosts + round(0.5 * non_hosts)
    injected = train.index[train.augmented][2 * hosts:]
    assert (label[injected] == 0).all() and (train.label[train.augmented] == 1).all()
    held_out = np.concatenate([splits["val"].index, splits["test"].index])
    assert not np.isin(train.index, held_out).any()
    # Seeded: the same split and injections again.
    again = split_and_augment(curves.flux.astype(np.float32), label, config, seed=3)["train"]
    np.testing.assert_array_equal(again.flux, train.flux)


def test_box_search_finds_the_period_epoch_and_duration_of_a_transit_in_noise():
    rng = np.random.default_rng(0)
    time = np.arange(3197) * CADENCE_DAYS
    period, epoch, duration = 3.1, 1.3, 0.15
    curves = rng.standard_normal((2, 3197))
    in_transit = np.abs((time - epoch + 0.5 * period) % period - 0.5 * period) < duration / 2
    curves[0, in_transit] -= 3.0
    found = transit_search.search(curves)
    assert found.period[0] == pytest.approx(period, rel=0.005)
    assert min(abs(found.epoch[0] - epoch) % period, period - abs(found.epoch[0] - epoch) % period) < 0.1
    assert 0.08 <= found.duration[0] <= 0.24 and found.depth[0] == pytest.approx(3.0, rel=0.35)
    assert found.sde[0] > found.sde[1] + 5  # the noise-only curve has no peak that stands out
    # Folded at the period found, the transit sits at phase 0.
    phase, flux = transit_search.fold(curves[0], found.period[0], found.epoch[0])
    assert np.all(np.diff(phase) >= 0) and flux[np.abs(phase) < 0.05].mean() < -2.0


def test_matched_filter_at_the_true_period_measures_depth_times_root_points():
    rng = np.random.default_rng(3)
    time = np.arange(3197) * CADENCE_DAYS
    period, duration = 2.0, 0.2
    in_transit = ((time + 0.5) % period) < duration
    curves = rng.standard_normal((1, 3197))
    curves[0, in_transit] -= 1.0
    expected = 1.0 * np.sqrt(in_transit.sum())
    snr = transit_search.matched_filter_snr(curves, np.array([period]), np.array([duration]), time[None, :])
    assert snr[0] == pytest.approx(expected, rel=0.2)


def test_built_in_data_records_each_curves_truth_beside_the_csv(tmp_path):
    paths = write_synthetic_dataset(tmp_path, SyntheticConfig(rows=120, positive_fraction=0.1, files=2), seed=4)
    for path in paths:
        truth = json.loads(truth_file(path).read_text())["rows"]
        lines = path.read_text().splitlines()
        assert len(truth["line"]) == len(lines) - 1 and truth["line"][0] == 2
        labels = [int(line.split(",", 1)[0]) for line in lines[1:]]
        assert truth["label"] == labels
        assert all((kind == "planet") == (label == 2) for kind, label in zip(truth["kind"], labels))
        hosts = [i for i, label in enumerate(labels) if label == 2]
        # The white noise is capped for S/N 7-12 at least (of a box as deep as the transit); the
        # noise on the transits' timescale (granulation) only adds to it.
        assert all(truth["snr_white"][i] > 3 and truth["period_days"][i] > 0 for i in hosts)
        assert all(0 < truth["snr"][i] < 1.1 * truth["snr_white"][i] for i in hosts)
        assert all(truth["snr"][i] is None and truth["snr_white"][i] is None
                   for i in range(len(labels)) if labels[i] == 1)
    # The truth files are not CSV, so discovery does not take them for data.
    from datasets import discover_files

    found, skipped = discover_files(tmp_path)
    assert [f.name for f in found] == ["synthetic/synthetic_kepler_01.csv", "synthetic/synthetic_kepler_02.csv"]
    assert skipped == 0  # the truth files are expected, not reported as skipped


def test_injected_binaries_are_scaled_to_their_snr_and_stay_non_hosts():
    from augmentation import inject_eclipsing_binaries

    rng = np.random.default_rng(2)
    flux = (5000.0 + rng.normal(0.0, 3.0, (40, 3197))).astype(np.float32)
    added = inject_eclipsing_binaries(flux, (30.0, 30.0), np.random.default_rng(4)) - flux
    centred = added - added.mean(axis=1, keepdims=True)
    snr = np.sqrt((centred**2).sum(axis=1)) / 3.0
    # White noise: the same on the eclipses' timescale, estimated from averages over an eclipse.
    assert np.median(snr) == pytest.approx(30.0, rel=0.03)
    np.testing.assert_allclose(snr, 30.0, rtol=0.2)
    assert (added.min(axis=1) < -0.5).all()  # eclipses dim the star
    curves = generate_light_curves(300, seed=5, positive_fraction=0.1)
    label = (curves.label == 2).astype(np.int8)
    config = SplitConfig(augment_copies=2, injected_fraction=0.5, injected_binary_fraction=0.25,
                         injected_gap_fraction=0.2)
    train = split_and_augment(curves.flux.astype(np.float32), label, config, seed=3)["train"]
    original = ~train.augmented
    non_hosts, hosts = int((train.label[original] == 0).sum()), int((train.label[original] == 1).sum())
    binaries, gaps = round(0.25 * non_hosts), round(0.2 * non_hosts)
    assert train.augmented.sum() == 2 * hosts + round(0.5 * non_hosts) + binaries + gaps
    # The binaries, then the gaps: copies of training non-hosts that stay non-hosts.
    assert (train.label[train.augmented][-(binaries + gaps):] == 0).all()
    assert (label[train.index[train.augmented][-(binaries + gaps):]] == 0).all()


def test_injected_binaries_take_their_eclipse_widths_and_secondaries_from_the_settings():
    from augmentation import plan_injected_binaries
    from synthetic_data import BINARY_SECONDARY, BINARY_WIDTH, draw_binaries

    built_in = draw_binaries(np.random.default_rng(3), 2000)
    wider = draw_binaries(np.random.default_rng(3), 2000, width=(0.02, 0.12), secondary=(0.0, 0.9))
    assert 0.04 <= built_in["width"].min() and built_in["width"].max() <= 0.12
    assert 0.02 <= wider["width"].min() < 0.03 and wider["width"].max() <= 0.12
    assert 0.05 <= built_in["secondary"].min() and wider["secondary"].min() < 0.01
    # As many numbers drawn: every other parameter is the same binary's.
    for key in ("period", "epoch", "diluted", "depth", "flat", "offset", "ellipsoidal", "reflection"):
        np.testing.assert_array_equal(built_in[key], wider[key])
    # Narrow eclipses and no secondary dim the star for a smaller share of the time: the median
    # share of cadences below half the deepest dip is about 0.05 for the built-in binaries and
    # 0.0125 for eclipses 2 % of the period long with no secondary.
    flux = np.random.default_rng(6).normal(0.0, 1.0, (64, 3197))
    shares = []
    for shape in ({}, {"width": (0.02, 0.02), "secondary": (0.0, 0.0)}):
        plan = plan_injected_binaries(np.arange(64), 3197, (100.0, 100.0), np.random.default_rng(5), **shape)
        added = plan.make(flux) - flux
        assert plan.label == 0 and (added.min(axis=1) < -3.0).all()
        shares.append(np.median((added < 0.5 * added.min(axis=1, keepdims=True)).mean(axis=1)))
    assert shares[0] > 0.04 and shares[1] < 0.02
    # The built-in binaries' ranges (the defaults before 1.15) are left out of the fingerprint, so
    # older caches resume with them set so; since 1.15 the defaults reach narrower and fainter.
    built_in = SplitConfig(injected_binary_width=BINARY_WIDTH, injected_binary_secondary=BINARY_SECONDARY)
    assert not {"injected_binary_width", "injected_binary_secondary"} & set(built_in.fingerprint())
    assert SplitConfig().fingerprint()["injected_binary_width"] == (0.02, 0.12)
    assert SplitConfig(injected_binary_secondary=(0.0, 0.9)).fingerprint()["injected_binary_secondary"] == (0.0, 0.9)
    assert SplitConfig(injected_binary_secondary=[0, 0]).injected_binary_secondary == (0.0, 0.0)  # none
    for bad in ({"injected_binary_width": (0.1, 0.05)}, {"injected_binary_width": (0.0, 0.1)},
                {"injected_binary_width": (0.1, 0.3)}, {"injected_binary_secondary": (0.5, 1.5)},
                {"injected_binary_secondary": (-0.1, 0.5)}, {"injected_binary_secondary": (0.5,)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SplitConfig(**bad)


def test_only_bright_injected_binaries_take_the_narrow_end_of_the_widths_when_narrow_snr_is_set():
    from augmentation import plan_injected_binaries
    from synthetic_data import log_uniform

    flux = np.random.default_rng(6).normal(0.0, 1.0, (300, 3197))
    snr = log_uniform(np.random.default_rng(5), 30.0, 3000.0, 300)  # the plan's first draw
    shape = {"width": (0.02, 0.02), "secondary": (0.0, 0.0)}

    def plan(**narrow):
        return plan_injected_binaries(np.arange(300), 3197, (30.0, 3000.0), np.random.default_rng(5), **shape, **narrow)

    whole = plan().make(flux)
    np.testing.assert_array_equal(plan(narrow_snr=0.0).make(flux), whole)  # 0: none moved, the same bits
    narrow = plan(narrow_snr=300.0)
    added = np.concatenate([narrow.make(flux[:256]), narrow.make(flux[256:])]) - flux  # in two parts
    np.testing.assert_array_equal(plan(narrow_snr=300.0).make(flux) - flux, added)
    # Eclipses of 2 % of the period above S/N 300, of the built-in 4 % below: the share of
    # cadences below half the deepest dip doubles for the faint ones (0.0125 -> 0.025) and stays
    # as it was for the bright ones.
    share = (added < 0.5 * added.min(axis=1, keepdims=True)).mean(axis=1)
    before = ((whole - flux) < 0.5 * (whole - flux).min(axis=1, keepdims=True)).mean(axis=1)
    bright = snr >= 300.0
    assert 50 < bright.sum() < 250
    assert np.median(before) < 0.016 and np.median(share[bright]) < 0.016 < 0.02 < np.median(share[~bright])
    np.testing.assert_array_equal(added[bright], (whole - flux)[bright])
    assert "injected_binary_narrow_snr" not in SplitConfig(injected_binary_narrow_snr=0).fingerprint()
    assert SplitConfig().fingerprint()["injected_binary_narrow_snr"] == 300  # the default since 1.15
    with pytest.raises(ValueError, match="injected_binary_narrow_snr"):
        SplitConfig(injected_binary_narrow_snr=-1.0)


def test_injected_gaps_add_two_jumps_and_ramps_in_the_curves_own_noise_and_stay_non_hosts():
    from augmentation import GAP_JUMP_SIGMA, GAP_RAMP_SIGMA, GAP_SEPARATION_CADENCES, plan_injected_gaps

    rng = np.random.default_rng(2)
    flux = rng.normal(0.0, 3.0, (300, 3197))
    plan = plan_injected_gaps(np.arange(300), 3197, np.random.default_rng(4))
    added = plan.make(flux) - flux
    assert plan.label == 0 and plan.kind == "injected gaps"
    sigma = 3.0  # white noise: its point-to-point scatter is its sigma
    for row in added / sigma:
        # Nothing before the first gap; the largest change of level from one cadence to the next
        # is at a gap: the first, or the second, 3-300 cadences after it (a ramp only decays).
        first = np.flatnonzero(row)[0]
        assert np.abs(row[:first]).max(initial=0.0) == 0.0
        largest = np.argmax(np.abs(np.diff(np.concatenate([[0.0], row]))))
        assert largest == first or GAP_SEPARATION_CADENCES[0] - 1 <= largest - first <= GAP_SEPARATION_CADENCES[1] + 1
        # Each mark is at most a jump and a ramp of 50 sigma; two of them at most twice that.
        assert np.abs(row).max() <= 2 * (GAP_JUMP_SIGMA[1] + GAP_RAMP_SIGMA[1]) * 1.1
    # Long after both gaps the ramps have settled: the level is the sum of two jumps of 2-50 sigma.
    settled = np.abs(added[:, -1] / sigma)
    assert settled.max() <= 2 * GAP_JUMP_SIGMA[1] * 1.1 and np.median(settled) > GAP_JUMP_SIGMA[0]
    # In the curve's own units: ten times the flux (and its noise), ten times the marks.
    tenfold = plan_injected_gaps(np.arange(300), 3197, np.random.default_rng(4)).make(10.0 * flux) - 10.0 * flux
    np.testing.assert_allclose(tenfold, 10.0 * added, rtol=1e-9, atol=1e-9)
    # Made in chunks of 256 rows, the same bits.
    chunked = plan_injected_gaps(np.arange(300), 3197, np.random.default_rng(4))
    np.testing.assert_array_equal(np.concatenate([chunked.make(flux[:256]), chunked.make(flux[256:])]), flux + added)


def test_a_detection_matches_a_planet_at_its_period_or_a_harmonic_and_on_its_transits():
    period, epoch, duration = np.full(6, 3.0), np.full(6, 1.0), np.full(6, 0.2)
    found_period = np.array([3.0, 6.0, 1.5, 3.0, 4.5, 3.02])
    # Twice the period from a later transit; half the period from between two transits (its next
    # event is on one); the right period half a period off; 1.5 times; 0.7 % off.
    found_epoch = np.array([1.1, 4.0, 2.5, 2.5, 1.0, 7.0])
    matched = transit_search.matches_ephemeris(found_period, found_epoch, period, epoch, duration)
    assert matched.tolist() == [True, True, True, False, False, True]


def _hosts_with_known_planets(seed: int):
    """Three 'hosts' of 3197 cadences in unit white noise, as the generator's truth records them:
    a planet whose phase jumps where 1.1 days are skipped (a closed-up gap), the same planet with
    no gap, and no planet at all."""
    rng = np.random.default_rng(seed)
    cadences = np.arange(3197)
    time = np.stack([cadences * CADENCE_DAYS + np.where(cadences >= 1600, 1.1, 0.0), cadences * CADENCE_DAYS,
                     cadences * CADENCE_DAYS])
    period, epoch, duration = 2.3, 0.9, 0.15
    curves = rng.standard_normal(time.shape)
    in_transit = np.abs((time - epoch + 0.5 * period) % period - 0.5 * period) < duration / 2
    curves[:2][in_transit[:2]] -= 1.5  # about S/N 20 over some 28 transits
    truth = SimpleNamespace(label=np.full(3, 2), period=np.full(3, period), epoch=np.full(3, epoch),
                            duration=np.full(3, duration), time=time, snr=np.array([20.0, 20.0, 5.0]))
    return truth, curves


def test_injection_recovery_finds_a_planet_over_its_time_stamps_and_not_in_noise(tmp_path):
    import plots

    truth, curves = _hosts_with_known_planets(5)
    with_time_stamps = injection_recovery(truth, curves, time_stamps=True)
    on_cadences = injection_recovery(truth, curves, time_stamps=False)
    assert with_time_stamps.tolist() == [True, True, False]
    # Without a gap the cadences are the time stamps; the found epoch is read back in true time.
    assert on_cadences[1:].tolist() == [True, False]
    report = recovery_report(with_time_stamps, truth)
    assert report["hosts"] == 3 and report["recall"] == pytest.approx(2 / 3)
    # S/N bins 0-7, 7-10, 10-12, 12-15, 15-20, 20-30, ...: the noise at 5, both planets at 20.
    assert report["recall_by_snr"][:6] == [0.0, None, None, None, None, 1.0]
    assert report["recall_snr_ge_12"] == 1.0
    # Drawn beside a scorer's recall in the benchmark's figure.
    scored = SimpleNamespace(**(vars(truth) | {"label": np.array([2, 2, 1])}),
                             kind=np.array(["planet", "planet", "quiet"]), depth=np.full(3, 1e-3),
                             n_transits=np.full(3, 28), spot_amplitude=np.zeros(3))
    reports = {"network": completeness(np.array([0.9, 0.8, 0.1]), scored, {FALSE_POSITIVE_THRESHOLD: 0.5})}
    plots.completeness(reports, tmp_path / "completeness.png", {"search with time stamps": report})
    assert (tmp_path / "completeness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_search_over_time_stamps_folds_what_the_cadences_scramble():
    truth, curves = _hosts_with_known_planets(6)
    over_time = transit_search.search(curves[:1], times=truth.time[:1])
    over_cadences = transit_search.search(curves[:1])
    assert over_time.period[0] == pytest.approx(2.3, rel=0.005)
    # The skipped 1.1 days put the second half's transits half a period off in cadence time:
    # the two halves line up only at half the period, half of whose boxes are empty.
    assert over_cadences.period[0] == pytest.approx(1.15, rel=0.005)
    assert over_cadences.power[0] < 0.7 * over_time.power[0]


def test_effective_trials_counts_the_normals_each_highest_value_was_drawn_from():
    rng = np.random.default_rng(8)
    highest = rng.standard_normal((3000, 200)).max(axis=1)
    assert effective_trials(highest) == pytest.approx(200, rel=0.1)
    # Fewer trials, lower maxima.
    assert effective_trials(rng.standard_normal((3000, 20)).max(axis=1)) == pytest.approx(20, rel=0.1)


def test_a_blind_search_in_white_noise_makes_more_trials_over_a_longer_window():
    time = np.arange(3197) * CADENCE_DAYS
    full = transit_search.white_noise_peak_snr(np.tile(time, (16, 1)), seed=1)
    half = transit_search.white_noise_peak_snr(np.tile(time[:1600], (16, 1)), seed=1)
    # The same seed, the same noise row by row: the first curves again give the same peaks.
    assert np.array_equal(full[:2], transit_search.white_noise_peak_snr(np.tile(time, (2, 1)), seed=1))
    # The highest of about a million unit normals: 4.8 give or take a few tenths.
    assert np.all((full > 3.8) & (full < 6.5))
    assert 2e5 < effective_trials(full) < 3e6
    # Half the window: fewer periods that repeat in it, and fewer phases of each.
    assert effective_trials(half) < 0.7 * effective_trials(full)


def test_a_search_over_the_cadences_told_the_gaps_reads_a_planets_full_snr_across_them():
    # 29 days of cadences, two gaps that skip 1.3 and 3.1 days: the transits' phase jumps twice.
    cadence = np.arange(1400)
    time = cadence * CADENCE_DAYS + (cadence >= 500) * 1.3 + (cadence >= 1000) * 3.1
    gaps = transit_search.gap_ends(time)
    assert gaps.tolist() == [500, 1000]
    noise = np.random.default_rng(4).standard_normal(cadence.size)
    for period, duration, depth in [(3.7, 0.24, 0.6), (9.1, 0.12, 1.3)]:
        in_transit = np.abs(transit_search.phase_offset(time, period, 0.77)) < duration / 2
        snr = depth * np.sqrt(in_transit.sum())  # the matched filter's, in unit noise
        curve = noise - depth * in_transit
        told_the_gaps = transit_search.segmented_search_snr(curve, gaps)
        one_phase = transit_search.segmented_search_snr(curve, [])
        # At least the planet's S/N (its phases are among the trials), give or take the box grid;
        # one phase over all the cadences loses what the gaps scrambled.
        assert 0.85 * snr < told_the_gaps < snr + 2.0
        assert one_phase < told_the_gaps - 1.0
    # Skips known only to lie anywhere in a whole period: more trials, never a lower peak in noise.
    assert transit_search.segmented_search_snr(noise, gaps, skip_days=(0.0, 32.0)) >= \
        transit_search.segmented_search_snr(noise, gaps)


def test_the_search_over_the_cadences_on_curves_reads_each_rows_planet_told_its_own_gaps():
    # Three rows of 29 days, as model inputs (one channel): a gap in each at its own cadence, a
    # planet in the first two, noise alone in the third.
    cadence = np.arange(1400)
    noise = np.random.default_rng(5).standard_normal((3, cadence.size))
    times = np.stack([cadence * CADENCE_DAYS + (cadence >= gap) * 2.2 for gap in (400, 700, 900)])
    in_transit = np.abs(transit_search.phase_offset(times, 3.7, 0.77)) < 0.12
    curves = (noise - 0.6 * in_transit * np.array([[1.0], [1.0], [0.0]]))[..., None]
    peaks = transit_search.segmented_peak_snr(curves, times, workers=2)
    # Row by row, in row order, each told its own gap.
    for row in range(3):
        assert peaks[row] == transit_search.segmented_search_snr(curves[row, :, 0], [(400, 700, 900)[row]])
    assert np.all(peaks[:2] > 0.85 * 0.6 * np.sqrt(in_transit[:2].sum(axis=1))) and peaks[2] < 6.0
    # White noise is the same search on noise rows.
    assert np.array_equal(transit_search.white_noise_peak_snr_over_cadences(times, seed=1),
                          transit_search.segmented_peak_snr(np.random.default_rng([1, 17]).standard_normal(times.shape),
                                                            times))


def test_the_search_over_the_cadences_makes_more_trials_than_over_the_time_stamps():
    # 21 days in two stretches, the second 2 days later than its cadences say.
    time = np.arange(1000) * CADENCE_DAYS
    times = np.tile(time + (np.arange(1000) >= 500) * 2.0, (6, 1))
    over_time = transit_search.white_noise_peak_snr(times, seed=2)
    over_cadences = transit_search.white_noise_peak_snr_over_cadences(times, seed=2)
    assert np.array_equal(over_cadences[:2], transit_search.white_noise_peak_snr_over_cadences(times[:2], seed=2))
    # The same noise: a phase of its own for the second segment is more trials, so higher peaks.
    assert np.all(over_cadences > over_time - 0.3)
    assert np.median(over_cadences) > np.median(over_time) + 0.2
    # With no gap, the same grid as the search over time stamps: about the same peaks.
    plain = np.tile(time, (6, 1))
    assert np.median(transit_search.white_noise_peak_snr_over_cadences(plain, seed=2)) == pytest.approx(
        np.median(transit_search.white_noise_peak_snr(plain, seed=2)), abs=0.4)


def test_the_ideal_observer_finds_strong_planets_first_and_ranks_faint_ones_among_non_hosts():
    from sklearn.metrics import roc_auc_score

    is_host = np.array([True] * 1000 + [False] * 5000)
    snr = np.concatenate([np.full(500, 20.0), np.zeros(500), np.full(5000, np.nan)])
    scores = ideal_observer_scores(snr, is_host, trials=1e5, seed=3)
    assert np.array_equal(scores, ideal_observer_scores(snr, is_host, trials=1e5, seed=3))
    non_hosts = scores[~is_host]
    assert scores[:500].min() > non_hosts.max()
    # A planet with no signal is a non-host to any detector: a coin toss against them.
    assert roc_auc_score(np.r_[np.ones(500), np.zeros(5000)], np.r_[scores[500:1000], non_hosts]) == pytest.approx(0.5, abs=0.04)
    # The non-hosts score the highest of `trials` unit normals, as effective_trials reads them.
    assert effective_trials(non_hosts) == pytest.approx(1e5, rel=0.1)


def test_the_ideal_observer_from_measured_noise_peaks_draws_each_curve_from_its_own_group():
    from scipy.stats import norm

    is_host = np.array([True] * 400 + [False] * 4000)
    snr = np.concatenate([np.linspace(3, 30, 400), np.full(4000, np.nan)])
    group = np.arange(4400) % 2
    # Measured peaks: group 0 as the highest of 1e5 normals, group 1 two sigma higher.
    rng = np.random.default_rng(6)
    model_peaks = norm.isf(-np.expm1(np.log(rng.random(3000)) / 1e5))
    peaks, noise_group = np.concatenate([model_peaks, model_peaks + 2.0]), np.repeat([0, 1], 3000)
    scores = ideal_observer_scores_measured(snr, is_host, group, peaks, noise_group, seed=3)
    non_hosts = scores[~is_host]
    assert np.median(non_hosts[group[~is_host] == 1]) - np.median(non_hosts[group[~is_host] == 0]) == \
        pytest.approx(2.0, abs=0.1)
    # Group 0 drawn from the model's own distribution: the model's scores, the hosts' transits read
    # with the very same normals (the two observers are paired).
    modelled = ideal_observer_scores(snr, is_host, trials=1e5, seed=3)
    zeros = group == 0
    assert effective_trials(scores[zeros & ~is_host]) == pytest.approx(1e5, rel=0.25)
    strong = is_host & (snr > 12)
    assert np.array_equal(scores[strong], modelled[strong])
    with pytest.raises(ValueError, match="group 2"):
        ideal_observer_scores_measured(snr, is_host, np.where(group == 1, 2, 0), peaks, noise_group, seed=3)


def test_recall_by_snr_per_transit_counts_the_middling_hosts_by_hand():
    # Hosts of S/N 10 with 100, 16 and 1 transits (1, 2.5 and 10 sigma each), one of S/N 30 (out of
    # range) and a non-host.
    truth = SimpleNamespace(label=np.array([2, 2, 2, 2, 2, 1]), snr=np.array([10.0, 10.0, 10.0, 10.0, 30.0, np.nan]),
                            n_transits=np.array([100, 100, 16, 1, 4, 0]))
    detected = np.array([False, True, True, True, True, True])
    report = recall_by_snr_per_transit(detected, truth)
    # Bins 0-1, 1-2, 2-4, 4-8, 8+: the two 1-sigma transits fall in 1-2.
    assert report["hosts"] == [0, 2, 1, 0, 1]
    assert report["recall"] == [None, 0.5, 1.0, None, 1.0]

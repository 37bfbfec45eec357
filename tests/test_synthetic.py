"""The built-in data generator: reproducible, balanced as stated, transits as stated."""

import numpy as np

from synthetic_data import (CADENCE_DAYS, transit_signal, generate_light_curves, write_synthetic_dataset,
                            SyntheticConfig)


def test_generator_is_reproducible_for_a_seed_and_differs_across_seeds():
    a = generate_light_curves(60, seed=3, positive_fraction=0.1)
    b = generate_light_curves(60, seed=3, positive_fraction=0.1)
    c = generate_light_curves(60, seed=4, positive_fraction=0.1)
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(a.flux, c.flux)


def test_class_balance_kinds_and_transit_parameters_are_as_documented():
    curves = generate_light_curves(2000, seed=1)
    host = curves.label == 2
    assert host.sum() == 80  # 4 %
    assert set(curves.kind[host]) == {"planet"}
    kinds, counts = np.unique(curves.kind[~host], return_counts=True)
    share = dict(zip(kinds, counts / (~host).sum()))
    assert abs(share["eclipsing_binary"] - 0.12) < 0.03 and abs(share["quiet"] - 0.55) < 0.05
    assert curves.depth[host].min() >= 1e-4 and curves.depth[host].max() <= 2e-2
    assert (curves.n_transits[host] >= 1).all()
    assert 0.75 < (curves.n_transits[host] >= 2).mean() < 0.97  # mostly two or more, a few single
    assert curves.flux.shape == (2000, 3197)
    assert np.abs(curves.flux.mean(axis=1)).max() < 0.01  # mean removed, like Kaggle's files


def test_transit_model_has_the_requested_depth_period_and_duration():
    rng = np.random.default_rng(0)
    time = np.arange(3197)[None, :] * CADENCE_DAYS
    period, epoch, depth, density = np.array([3.0]), np.array([1.0]), np.array([0.01]), np.array([1.0])
    loss, duration = transit_signal(rng, time, period, epoch, depth, density)
    loss = loss[0]
    # Depth at mid-transit within 15 % (limb darkening, impact parameter and 29.4-min smearing).
    centres = np.flatnonzero((loss > 0) & (np.roll(loss, 1) <= loss) & (np.roll(loss, -1) < loss))
    assert abs(loss.max() - 0.01) / 0.01 < 0.15
    # Transits every 3 days from day 1.
    assert np.allclose(np.diff(time[0, centres]), 3.0, atol=CADENCE_DAYS)
    assert abs(time[0, centres[0]] - 1.0) <= CADENCE_DAYS
    # A Sun-like star and a 3-day orbit: about 2.5 hours, from Kepler's third law.
    assert 0.05 < duration[0] < 0.14


def test_written_files_use_the_kaggle_layout(tmp_path):
    paths = write_synthetic_dataset(tmp_path, SyntheticConfig(rows=50, positive_fraction=0.1, files=2), seed=1)
    assert [p.name for p in paths] == ["synthetic_kepler_01.csv", "synthetic_kepler_02.csv"]
    header = paths[0].read_text().splitlines()[0].split(",")
    assert header[:3] == ["LABEL", "FLUX.1", "FLUX.2"] and header[-1] == "FLUX.3197"
    assert not list(tmp_path.glob(".synthetic*"))  # staging folder renamed away

"""Preprocessing functions on small series with known answers."""

import dataclasses
import json

import numpy as np
import pytest

from preprocessing import (PreprocessingConfig, bin_onto_grid, clip_and_compress, fill_missing, find_steps,
                           local_quadratic_trend, noise_on_timescale, preprocess, robust_normalise, robust_trend,
                           running_median, step_jumps, window_starts)

CADENCE_DAYS = 29.4244 / 1440


def test_fill_missing_interpolates_inside_and_extends_edges():
    flux = np.array([[np.nan, 1.0, np.nan, np.nan, 4.0, np.inf, 6.0, np.nan]])
    filled, count = fill_missing(flux)
    np.testing.assert_allclose(filled, [[1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.0]])
    assert count.tolist() == [5]


def test_fill_missing_leaves_complete_rows_alone():
    flux = np.arange(12.0).reshape(2, 6)
    filled, count = fill_missing(flux)
    np.testing.assert_array_equal(filled, flux)
    assert count.tolist() == [0, 0]


def test_bin_onto_grid_averages_by_time_weighted_by_errors():
    # Samples a third of a cadence apart; the grid starts at the first one.
    time = np.arange(7) / 3.0
    flux = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    binned, counts = bin_onto_grid(time, flux, 1.0)
    # Point k holds the samples within half a cadence of k: {0, 1/3}, {2/3, 1, 4/3}, {5/3, 2}.
    np.testing.assert_allclose(binned, [1.5, 4.0, 6.5])
    assert counts.tolist() == [2, 3, 2]
    error = np.array([1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0])  # the 5.0 weighs four times as much
    np.testing.assert_allclose(bin_onto_grid(time, flux, 1.0, error)[0][1], (3 + 4 + 4 * 5) / 6)
    # A gap stays empty (NaN); a series already on the grid passes unchanged.
    binned, counts = bin_onto_grid(np.array([0.0, 1.0, 4.0]), np.array([1.0, 2.0, 3.0]), 1.0)
    np.testing.assert_array_equal(counts, [1, 1, 0, 0, 1])
    assert np.isnan(binned[2:4]).all() and binned[4] == 3.0
    on_grid = np.arange(100) * CADENCE_DAYS + 1234.5
    np.testing.assert_array_equal(bin_onto_grid(on_grid, np.arange(100.0), CADENCE_DAYS)[0], np.arange(100.0))


def test_window_starts_cover_the_curve_without_padding_long_ones():
    assert window_starts(10, 64) == [0]
    assert window_starts(64, 64) == [0]
    assert window_starts(100, 64) == [0, 36]
    assert window_starts(200, 64) == [0, 64, 128, 136]  # the last one ends at the end


def test_no_trend_window_reaches_across_a_long_gap():
    """A step of 1000 across a 2-day gap (a new aperture after a downlink) leaves no trace either side."""
    config = PreprocessingConfig(sequence_length=400, detrend_window=49)
    rng = np.random.default_rng(0)
    flux = rng.normal(0, 1.0, (1, 400))
    flux[0, 200:] += 1000.0
    flux[0, 180:200] = np.nan  # 20 cadences = 0.41 d: bridged
    gappy = flux.copy()
    gappy[0, 150:250] = np.nan  # 100 cadences = 2 d > max_gap_days: two stretches
    out = preprocess(gappy.astype(np.float32), config)[0, :, 0]
    assert (out[150:250] == 0).all()  # no data: no signal
    assert np.abs(out[:150]).max() < 5 and np.abs(out[250:]).max() < 5  # pure noise either side
    # With only the short gap, the fit bridges it (and the step shows), as it must not across long ones.
    assert np.abs(preprocess(flux.astype(np.float32), config)[0, :, 0]).max() > 5


def test_rows_with_gaps_keep_a_transit_and_rows_without_are_unchanged():
    config = PreprocessingConfig(sequence_length=600)
    rng = np.random.default_rng(1)
    flux = rng.normal(0, 1.0, (2, 600))
    flux[:, 300:306] -= 8.0  # a 6-cadence transit of 8 sigma
    plain = preprocess(flux.astype(np.float32), config)
    gappy = flux.copy()
    gappy[1, 100:160] = np.nan
    mixed = preprocess(gappy.astype(np.float32), config)
    np.testing.assert_array_equal(mixed[0], plain[0])  # the row without gaps takes the plain path
    assert mixed[1, 300:306, 0].mean() < -5 and (mixed[1, 100:160, 0] == 0).all()


def test_step_jumps_known_values():
    # A line has no jump anywhere (the fits take its slope); a step of 3 on it jumps 3 at the step.
    line = 0.5 * np.arange(40.0)[None, :]
    np.testing.assert_allclose(step_jumps(line, 6), 0.0, atol=1e-12)
    stepped = line + 3.0 * (np.arange(40) >= 20)
    jumps = step_jumps(stepped, 6)
    assert jumps.shape == (1, 40 - 12 + 1)
    assert jumps[0, 20 - 6] == pytest.approx(3.0) and np.argmax(jumps[0]) == 20 - 6


def test_a_step_is_taken_out_of_the_trend_and_a_transit_is_not(tmp_path):
    """A closed-up gap (the level jumps and stays) no longer leaves a false dip beside it; a transit,
    which jumps down and back up, is not taken for one; a row without a step is fitted as before."""
    config = PreprocessingConfig(sequence_length=600, step_sigma=6.0)
    off = dataclasses.replace(config, step_sigma=0.0)  # the default
    rng = np.random.default_rng(3)
    flux = rng.normal(0, 1.0, (3, 600))
    flux[0, 300:] += 30.0          # a closed-up gap: 30 sigma higher from cadence 300 on
    flux[1, 300:308] -= 30.0       # an 8-cadence transit, as deep
    flux[2, 200:] -= 20.0 * np.exp(-np.arange(400) / 40.0)  # a sensitivity dropout and its recovery
    steps = find_steps(flux, config.detrend_window, config.step_sigma)
    assert np.flatnonzero(steps[0]).tolist() == [300] and steps[0, 300] == pytest.approx(30.0, abs=3.0)
    assert not steps[1].any()
    assert np.flatnonzero(steps[2]).tolist() == [200] and steps[2, 200] < -10
    out, old = preprocess(flux, config)[..., 0], preprocess(flux, off)[..., 0]
    assert out[0].min() > -5 and old[0].min() < -5            # the fit across the step left a dip
    assert out[2].min() > -5 and old[2].min() < -5
    assert out[1, 300:308].mean() < -10 and np.array_equal(out[1], old[1])  # kept, bit for bit as before
    # Saved and read back; a settings file from before the option reads as off, as it trained; a
    # run with it off keeps the fingerprint it had before (its checkpoint resumes).
    (tmp_path / "preprocessor.json").write_text(json.dumps(config.to_json()))
    assert PreprocessingConfig.from_json_file(tmp_path / "preprocessor.json").step_sigma == 6.0
    saved = config.to_json()
    del saved["step_sigma"]
    (tmp_path / "preprocessor.json").write_text(json.dumps(saved))
    assert PreprocessingConfig.from_json_file(tmp_path / "preprocessor.json").step_sigma == 0.0
    assert config.fingerprint()["step_sigma"] == 6.0 and "step_sigma" not in off.fingerprint()
    assert PreprocessingConfig().step_sigma == 0.0
    with pytest.raises(ValueError, match="step_sigma must be 0"):
        PreprocessingConfig(step_sigma=-1.0)


def test_a_deep_transit_reads_its_depth_and_a_flare_leaves_no_dips_beside_it(tmp_path):
    """The unmasked first fit is pulled into a deep transit (up by a flare), away from the curve
    half a window either side. Before 1.14 those lobes were masked too, the masked fit had too
    little of each window left and kept the pulled trend: +5 sigma shoulders beside the transit,
    which read 30-50 % shallow, and false dips beside the flare. ``median_first_mask`` masks only
    what also stands out from a running median."""
    config = PreprocessingConfig(sequence_length=800)
    old = dataclasses.replace(config, median_first_mask=False)
    rng = np.random.default_rng(5)
    cadence = np.arange(800)
    flux = rng.normal(0, 1.0, (2, 800)) + 5.0 * np.sin(2 * np.pi * cadence / 400)  # a spotted star
    flux[0, 300:308] -= 100.0  # an 8-cadence transit of 100 sigma
    flux[1, 500:503] += 50.0   # a 3-cadence flare
    depth = clip_and_compress(np.array(-100.0), config.upper_clip, config.compress_scale)  # -29.98
    out, before = preprocess(flux, config)[..., 0], preprocess(flux, old)[..., 0]
    beside = np.r_[280:298, 310:328]
    assert np.abs(out[0, beside]).max() < 4 and out[0, 300:308].mean() == pytest.approx(depth, abs=1.0)
    assert before[0, beside].max() > 4.5  # the shoulders
    sigmas = config.compress_scale * np.sinh(before[0, 300:308].mean() / config.compress_scale)
    assert -70 < sigmas < -50  # the 100-sigma transit read 30-50 % shallow
    near = np.r_[470:500, 503:533]
    assert out[1, near].min() > -4 and before[1, near].min() < -4  # no false dip beside the flare
    # Far from both, the curves are detrended alike (each row's scale, its robust sigma, differs a little).
    np.testing.assert_allclose(out[:, 600:], before[:, 600:], rtol=0.15, atol=0.2)
    # Saved and read back; settings saved before 1.14 read as off, as they trained; off keeps the
    # fingerprint 1.13 made (its checkpoints resume with it set so).
    saved = config.to_json()
    del saved["median_first_mask"]
    (tmp_path / "preprocessor.json").write_text(json.dumps(saved))
    assert PreprocessingConfig.from_json_file(tmp_path / "preprocessor.json").median_first_mask is False
    assert config.fingerprint()["median_first_mask"] is True and "median_first_mask" not in old.fingerprint()
    with pytest.raises(ValueError, match="median_first_mask must be true or false"):
        PreprocessingConfig(median_first_mask="yes")


def test_running_median_known_values_and_stretches():
    flux = np.array([[0.0, 0, 0, 9, 0, 0, 0, 5, 5, 5]])
    np.testing.assert_array_equal(running_median(flux, 3), [[0, 0, 0, 0, 0, 0, 0, 5, 5, 5]])
    # Each stretch alone, its ends as the array's; cadences in no stretch keep their value.
    flux = np.array([[1.0, 9, 1, 1, 7, 7, 0, 5, 5, 5]])
    segment = np.array([[0, 0, 0, 0, -1, -1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(running_median(flux, 3, segment), [[1, 1, 1, 1, 7, 7, 0, 5, 5, 5]])
    assert running_median(flux, 3)[0, 6] == 5  # across the gap: the 7 before it counts


def test_robust_normalise_known_values_and_scale_invariance():
    row = np.array([[1.0, 2.0, 3.0, 4.0, 100.0]])
    # median 3, |deviations| 2,1,0,1,97 -> MAD 1 -> sigma 1.4826
    np.testing.assert_allclose(robust_normalise(row), (row - 3.0) / 1.4826)
    rng = np.random.default_rng(0)
    flux = rng.normal(size=(3, 200))
    np.testing.assert_allclose(robust_normalise(flux * 1e6 + 42.0), robust_normalise(flux), atol=1e-9)


def test_clip_and_compress_clips_upward_and_keeps_order_downward():
    values = np.array([[-1000.0, -30.0, -1.0, 0.0, 1.0, 3.0, 50.0]])
    out = clip_and_compress(values, upper_clip=3.0, compress_scale=10.0)
    assert out[0, 5] == out[0, 6] == pytest.approx(10 * np.arcsinh(0.3))
    assert out[0, 3] == 0.0 and out[0, 2] == pytest.approx(-0.99834, abs=1e-4)  # near-linear small values
    assert np.all(np.diff(out[0, :6]) > 0)  # order kept: deeper stays lower
    assert out[0, 0] > -80  # a 1000-sigma eclipse is compressed


def test_local_quadratic_reproduces_a_parabola_and_bridges_a_masked_hole():
    i = np.arange(300, dtype=float)
    parabola = (3.0 + 0.1 * i + 0.002 * i**2)[None, :]
    keep = np.ones_like(parabola, dtype=bool)
    np.testing.assert_allclose(local_quadratic_trend(parabola, keep, 21, 1, parabola), parabola, atol=1e-8)
    dipped = parabola.copy()
    dipped[0, 140:150] -= 5.0
    keep[0, 138:152] = False
    trend = local_quadratic_trend(dipped, keep, 31, 1, dipped)
    np.testing.assert_allclose(trend, parabola, atol=1e-6)


def _spotted_star_with_transit(seed, depth=200e-6, noise=50e-6, amplitude=0.01, period=5.0):
    rng = np.random.default_rng(seed)
    time = np.arange(3197) * CADENCE_DAYS
    base = 1.0 + amplitude * np.sin(2 * np.pi * time / period + seed)
    white = noise * rng.standard_normal(time.size)
    in_transit = np.abs(time - (15.0 + 2.3 * seed)) < 0.125  # 6 hours
    return base + white, base + white - depth * in_transit, in_transit, white


def test_detrending_keeps_a_200ppm_six_hour_transit():
    """On a 1 %, 5-day spot modulation with 50 ppm noise, most of the depth survives."""
    config = PreprocessingConfig()
    kept = []
    for seed in range(12):
        _, flux, in_transit, white = _spotted_star_with_transit(seed)
        residual = flux - robust_trend(flux[None, :], config)[0]
        kept.append(-(residual[in_transit] - white[in_transit]).mean() / 200e-6)
    assert np.median(kept) > 0.85, kept
    assert min(kept) > 0.6, kept


def test_detrending_removes_spot_modulation_to_the_noise_level():
    config = PreprocessingConfig()
    for seed in range(4):
        quiet, _, _, white = _spotted_star_with_transit(seed)
        residual = quiet - robust_trend(quiet[None, :], config)[0]
        assert residual.std() < 1.3 * white.std()  # a 1 % (10,000 ppm) signal down to ~50 ppm


def test_preprocess_shape_dtype_and_unit_independence():
    config = dataclasses.replace(PreprocessingConfig(), sequence_length=256, detrend_window=21)
    _, flux, _, _ = _spotted_star_with_transit(1)
    flux = np.stack([flux[:256], flux[256:512]])
    out = preprocess(flux, config)
    assert out.shape == (2, 256, 2) and out.dtype == np.float32  # the default's two detrendings
    electrons = preprocess(flux * 5.0e4 - 5.0e4, config)  # e-/s around the mean
    ppm = preprocess((flux - 1.0) * 1e6, config)
    np.testing.assert_allclose(electrons, out, atol=1e-3)
    np.testing.assert_allclose(ppm, out, atol=1e-3)


def test_extra_detrending_windows_are_channels_each_as_its_window_alone(tmp_path):
    config = dataclasses.replace(PreprocessingConfig(), sequence_length=256, detrend_window=21,
                                 extra_detrend_windows=[41, 61])  # a list, as --config gives it
    assert config.extra_detrend_windows == (41, 61) and config.channels == 3
    _, flux, _, _ = _spotted_star_with_transit(2)
    flux = np.stack([flux[:256], flux[256:512], flux[512:768]])
    flux[1, 100:130] = np.nan  # a gap: the gappy path, per channel too
    out = preprocess(flux, config, chunk_rows=2)
    assert out.shape == (3, 256, 3) and out.dtype == np.float32
    for channel, window in enumerate((21, 41, 61)):
        alone = preprocess(flux, dataclasses.replace(config, detrend_window=window, extra_detrend_windows=()))
        assert np.array_equal(out[..., channel], alone[..., 0])
    assert not np.array_equal(out[..., 0], out[..., 2])  # two views of the curve, not one twice
    # Saved as JSON and read back as the same settings.
    path = tmp_path / "preprocessor.json"
    path.write_text(json.dumps(config.to_json()))
    assert PreprocessingConfig.from_json_file(path) == config
    # The default has two channels since 1.9, the second window 1.5 times the first where it fits,
    # recorded as used; one channel is fingerprinted as before 1.8 was.
    assert PreprocessingConfig().extra_windows == (73,) and PreprocessingConfig().channels == 2
    assert PreprocessingConfig().fingerprint()["extra_detrend_windows"] == (73,)
    assert PreprocessingConfig().to_json()["extra_detrend_windows"] == [73]
    from settings import Settings  # results/settings.json too: the windows as used, not null

    assert Settings().to_json()["preprocessing"]["extra_detrend_windows"] == [73]
    assert PreprocessingConfig(detrend_window=21, sequence_length=64).extra_windows == (31,)
    assert PreprocessingConfig(detrend_window=49, sequence_length=64).channels == 1  # 73 would not fit
    assert config.fingerprint()["extra_detrend_windows"] == (41, 61)
    one_channel = dataclasses.replace(PreprocessingConfig(), extra_detrend_windows=())
    assert "extra_detrend_windows" not in one_channel.fingerprint()
    # A model saved before 1.8 has no such setting in its file: it reads one channel, as trained.
    before = one_channel.to_json()
    del before["extra_detrend_windows"]
    path.write_text(json.dumps(before))
    assert PreprocessingConfig.from_json_file(path).channels == 1
    with pytest.raises(ValueError, match="extra_detrend_windows must be odd"):
        PreprocessingConfig(extra_detrend_windows=(50,))
    with pytest.raises(ValueError, match="out must be float32 of shape"):
        preprocess(flux, config, out=np.empty((3, 256, 1), np.float32))


def test_noise_on_timescale_is_the_white_noise_on_every_timescale_and_counts_red_noise():
    from synthetic_data import _coloured_noise

    rng = np.random.default_rng(7)
    white = 3.0 * rng.standard_normal((200, 3197))
    for cadences in (1, 5, 20, 40):
        level = noise_on_timescale(white, np.full(200, cadences))
        assert np.median(level) == pytest.approx(3.0, rel=0.02)
    # Slow variability is detrended away; NaN (no data) is left out.
    slow = white + 50.0 * np.sin(np.arange(3197) / 200.0)
    slow[:, 1000:1100] = np.nan
    assert np.median(noise_on_timescale(slow, np.full(200, 10))) == pytest.approx(3.0, rel=0.03)
    # Granulation of 1 on a 10-cadence timescale beside white noise of 1: invisible cadence to
    # cadence, it dominates averages over hours.
    red = rng.standard_normal((200, 3197)) + _coloured_noise(rng, 200, 3197, np.full(200, 10.0))
    by_timescale = [np.median(noise_on_timescale(red, np.full(200, k))) for k in (1, 4, 12)]
    assert 1.0 < by_timescale[0] < by_timescale[1] < by_timescale[2]
    assert by_timescale[2] > 1.5


def test_preprocess_rejects_wrong_length():
    with pytest.raises(ValueError, match="shape"):
        preprocess(np.zeros((2, 100)), PreprocessingConfig())


def test_deepest_dip_in_point_to_point_sigmas_whatever_the_units_and_gaps():
    from preprocessing import deepest_dip

    rng = np.random.default_rng(4)
    config = PreprocessingConfig(sequence_length=1000)
    flux = rng.normal(0.0, 1.0, (3, 1000))
    flux[1, 300:306] -= 10.0  # a 6-cadence box, 10 sigmas deep
    flux[2] += 5.0 * np.sin(np.arange(1000) / 80.0)  # smooth variability: the trend takes it
    depth = deepest_dip(flux, config)
    assert 2.0 < depth[0] < 3.5 and 2.0 < depth[2] < 3.5  # the 3rd lowest of 1000 Gaussian points: about 2.7
    assert 8.5 < depth[1] < 11.0
    # Scale and offset drop out; cadences without data count in neither the dip nor the scatter.
    assert np.allclose(deepest_dip(250.0 * flux + 1e4, config), depth)
    gappy = flux.copy()
    gappy[:, 600:700] = np.nan
    assert np.allclose(deepest_dip(gappy, config)[1], depth[1], rtol=0.1)
    # Each row detrended as ``preprocess`` detrends it, whatever its neighbours: a row without
    # gaps beside one with them gives what it gives alone (a dip this deep keeps the first,
    # unmasked fit, which differs between the two paths).
    deep = flux[0] - 40.0 * (np.abs(np.arange(1000) - 400) < 5)
    assert deepest_dip(np.stack([deep, gappy[0]]), config)[0] == deepest_dip(deep[None, :], config)[0]
    # Two single low cadences do not make a dip: the third lowest decides.
    spikes = flux[:1].copy()
    spikes[0, [100, 500]] -= 30.0
    assert deepest_dip(spikes, config)[0] < 3.5

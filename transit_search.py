"""Box least squares on preprocessed curves: the classical transit search, with astropy.

Used five ways: as the classical baseline the network is measured against (the project's own
detrending, then a BLS period search; the score is the signal detection efficiency, SDE, of the
highest peak), as the matched-filter "oracle" (BLS at each curve's true period and duration),
as a survey pipeline's injection-recovery (a blind search over the true time stamps; a planet
counts as recovered when the strongest dip found is its ephemeris and stands at S/N 7.1:
``matches_ephemeris``), to count how many independent trials a blind search makes (its highest
S/N in pure white noise: ``white_noise_peak_snr``, which sets the ideal observer's false alarms;
``white_noise_peak_snr_over_cadences`` the same for a search of a Kaggle-layout row, which
knows no time stamps: ``segmented_search_snr``, also run on the curves themselves by
``segmented_peak_snr``), and to fold the hosts shown in the results gallery at the period found.

The curves are the model's inputs: detrended, in units of their own noise, flares clipped. The
Kaggle layout carries no time stamps, so cadence ``i`` is at ``i * cadence_days`` unless the
true times are given (the generator knows them).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields

import numpy as np

from synthetic_data import CADENCE_DAYS, GAP_SKIP_DAYS

# The search grid: at least two transits in a 65-day window, durations from 1.4 to 11 hours
# (the longest must stay below the shortest period). The search runs on the curve binned 3 to 1
# (1.5-hour points): 3000 log-spaced periods keep the phase drift over the window within a
# binned point at the shortest periods. Measured: 5000 curves in 118 s on 2 cores (0.047 s a
# curve per core); unbinned 2.2 times as long, unbinned at astropy's default oversampling 5 times.
PERIOD_RANGE_DAYS = (0.5, 32.0)
PERIODS = 3000
DURATIONS_DAYS = (0.06, 0.12, 0.24, 0.45)
OVERSAMPLE = 2
SEARCH_BIN = 3
# A detection matches a planet at its period or a harmonic within 1 %: seven times the spacing
# of the trial periods (0.14 %), far from any other simple ratio.
HARMONICS = (1 / 3, 1 / 2, 1.0, 2.0, 3.0)
PERIOD_TOLERANCE = 0.01
# A transit lasts at most this fraction of its period (the generator's longest: 0.298, a 0.5-day
# planet round a star of density 0.1 g/cm^3); a longer box is no transit and no trial of the
# white-noise search.
MAX_DUTY_CYCLE = 0.3


@dataclass(frozen=True)
class SearchResult:
    """The strongest box-shaped dip of each curve (arrays of [rows])."""

    period: np.ndarray     # days
    epoch: np.ndarray      # days, mid-transit
    duration: np.ndarray   # days
    depth: np.ndarray      # in the curve's units (noise sigmas for preprocessed curves)
    sde: np.ndarray        # (peak power - mean power) / std of power over the period grid
    power: np.ndarray      # the peak's log-likelihood power

    def take(self, rows) -> SearchResult:
        """The results of some of the curves (``rows``: indices or a boolean mask)."""
        return SearchResult(*(np.asarray(getattr(self, f.name))[rows] for f in fields(self)))


def _times(length: int, cadence_days: float) -> np.ndarray:
    return np.arange(length) * cadence_days


def cadence_times(shape: tuple[int, int], cadence_days: float = CADENCE_DAYS) -> np.ndarray:
    """[rows, cadences] days of each cadence of a Kaggle-layout row, which carries no time stamps:
    cadence ``i`` at ``i * cadence_days`` (what ``search`` uses when it is given no times)."""
    return np.broadcast_to(_times(shape[1], cadence_days), shape)


def _periods_for(time: np.ndarray) -> np.ndarray:
    """``period_grid`` of a curve's time stamps: its span, the last cadence's length included."""
    return period_grid(float(time[-1] - time[0] + (time[1] - time[0])))


def phase_offset(time, period, epoch):
    """Days from the nearest mid-transit of an ephemeris (``period``, ``epoch``), in [-period/2, period/2).

    >>> phase_offset(np.array([1.0, 2.4, 4.2]), 3.0, 1.0).round(6).tolist()
    [0.0, 1.4, 0.2]
    """
    return (np.asarray(time) - epoch + 0.5 * period) % period - 0.5 * period


def period_grid(baseline_days: float) -> np.ndarray:
    """The trial periods for a curve spanning ``baseline_days``: log-spaced from the shortest
    period to the longest that shows two transits (half the baseline, at most 32 days), at the
    density of 3000 periods over 0.5-32 days. A 65-day curve gets exactly that grid; a shorter
    one, fewer periods, none of them unable to repeat within the curve."""
    shortest, longest = PERIOD_RANGE_DAYS
    longest = max(min(longest, 0.5 * baseline_days), 1.01 * shortest)
    count = max(2, int(round(PERIODS * np.log(longest / shortest) / np.log(PERIOD_RANGE_DAYS[1] / shortest))))
    return np.exp(np.linspace(np.log(shortest), np.log(longest), count))


def _search_one(curve: np.ndarray, time: np.ndarray) -> tuple:
    from astropy.timeseries import BoxLeastSquares

    usable = curve.size - curve.size % SEARCH_BIN
    periods = _periods_for(time)
    binned = curve[:usable].astype(np.float64).reshape(-1, SEARCH_BIN).mean(axis=1)
    time = np.asarray(time[:usable], dtype=np.float64).reshape(-1, SEARCH_BIN).mean(axis=1)
    result = BoxLeastSquares(time, binned).power(
        periods, DURATIONS_DAYS, objective="likelihood", oversample=OVERSAMPLE)
    power = np.asarray(result.power)
    best = int(np.argmax(power))
    sde = (power[best] - power.mean()) / max(power.std(), 1e-12)
    return (float(result.period[best]), float(result.transit_time[best]), float(result.duration[best]),
            float(result.depth[best]), float(sde), float(power[best]))


def _rows_of_chunk(args) -> list:
    one, curves, times = args
    return [one(curve, time) for curve, time in zip(curves, times)]


def _map_rows(one, curves: np.ndarray, times: np.ndarray, workers: int) -> list:
    """``one(curve, time)`` of every row, in row order, over ``workers`` processes."""
    parts = max(1, min(len(curves), 8 * workers))
    chunks = [(one, part, part_times) for part, part_times in zip(np.array_split(curves, parts),
                                                                   np.array_split(np.asarray(times), parts)) if len(part)]
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            return [row for part in pool.map(_rows_of_chunk, chunks) for row in part]
    return [row for part in map(_rows_of_chunk, chunks) for row in part]


def first_channel(curves) -> np.ndarray:
    """[rows, cadences] of model inputs [rows, cadences(, channels)]: the first channel, the
    curve detrended over ``detrend_window`` (the others are the same curve detrended otherwise)."""
    curves = np.asarray(curves)
    return curves[..., 0] if curves.ndim == 3 else curves.reshape(len(curves), -1)


def search(curves: np.ndarray, cadence_days: float = CADENCE_DAYS, workers: int = 1,
           times: np.ndarray | None = None) -> SearchResult:
    """BLS period search of each row of ``curves`` ([rows, cadences], preprocessed).

    Args:
        curves: [rows, cadences] (a trailing channel axis of 1 is accepted).
        cadence_days: time between cadences, where ``times`` is not given.
        workers: processes, each searching its own chunks of curves.
        times: [rows, cadences] days of each cadence (e.g. the generator's, its gaps' time
            skipped), or None: cadence ``i`` at ``i * cadence_days``, as a Kaggle-layout row.
    """
    curves = first_channel(curves)
    if times is None:
        times = cadence_times(curves.shape, cadence_days)
    columns = np.array(_map_rows(_search_one, curves, times, workers), dtype=np.float64).reshape(-1, 6).T
    return SearchResult(*columns)


def _peak_snr_one(curve: np.ndarray, time: np.ndarray) -> float:
    from astropy.timeseries import BoxLeastSquares

    time = np.asarray(time, dtype=np.float64)
    periods = _periods_for(time)
    search = BoxLeastSquares(time, np.asarray(curve, dtype=np.float64))
    best = -np.inf
    for duration in DURATIONS_DAYS:
        allowed = periods[duration <= MAX_DUTY_CYCLE * periods]
        if allowed.size:
            result = search.power(allowed, [duration], objective="snr", oversample=OVERSAMPLE)
            best = max(best, float(np.max(result.power)))
    return best


def white_noise_peak_snr(times: np.ndarray, workers: int = 1, seed: int = 0) -> np.ndarray:
    """[rows] the highest box S/N a blind search finds in pure white noise on each row's time stamps.

    The search is the classical baseline's grid (``period_grid``, ``DURATIONS_DAYS``,
    ``OVERSAMPLE``), unbinned, its boxes no longer than ``MAX_DUTY_CYCLE`` of their period, each
    trial's S/N the depth over its error (unit noise per cadence). Each trial's S/N is then a
    standard normal, and the highest of them is what a search "finds" when there is nothing to
    find: its distribution says how many independent trials the search makes
    (``completeness.effective_trials``), which sets how high a real transit must stand to be told
    from noise at a given false-alarm rate.

    Args:
        times: [rows, cadences] days of each cadence (e.g. the generator's, gaps skipped).
        workers: processes.
        seed: of the noise; the same seed and times give the same figures.
    """
    times = np.asarray(times, dtype=np.float64)
    noise = np.random.default_rng([seed, 17]).standard_normal(times.shape)
    return np.array(_map_rows(_peak_snr_one, noise, times, workers), dtype=np.float64)


def gap_ends(time: np.ndarray) -> np.ndarray:
    """The cadences of one curve where a closed-up gap ends: its time jumps by more than 1.5 cadences.

    >>> gap_ends(np.array([0.0, 1.0, 2.0, 5.0, 6.0, 9.5])).tolist()
    [3, 5]
    """
    step = np.diff(time)
    return np.flatnonzero(step > 1.5 * np.median(step)) + 1


def _box_sums(flux: np.ndarray, periods: np.ndarray, step: float, bins: np.ndarray) -> tuple:
    """([periods, max(bins)] sum of ``flux`` in each box, its cadence count): ``flux`` (cadence
    ``i`` at ``i * CADENCE_DAYS``) folded at each period into ``bins`` phase bins of ``step``
    days, a box ``OVERSAMPLE`` bins wide starting at each bin (wrapping round the period)."""
    rows, width = periods.size, int(bins.max())
    # Phases are never negative, so truncation is the floor.
    phase_bin = (np.arange(flux.size) * CADENCE_DAYS % periods[:, None] * (1.0 / step)).astype(np.int64)
    phase_bin += np.arange(rows)[:, None] * (width + OVERSAMPLE)
    flat = phase_bin.ravel()
    size = rows * (width + OVERSAMPLE)
    sums = np.bincount(flat, np.broadcast_to(flux, phase_bin.shape).ravel(), size).reshape(rows, -1)
    counts = np.bincount(flat, minlength=size).reshape(rows, -1).astype(np.float64)
    box_sum, box_count = sums[:, :width].copy(), counts[:, :width].copy()
    every = np.arange(rows)
    for offset in range(1, OVERSAMPLE):
        # Each row's first bins again after its last, so that a box wraps round the period.
        for folded in (sums, counts):
            folded[every, bins + offset - 1] = folded[:, offset - 1]
        box_sum += sums[:, offset:offset + width]
        box_count += counts[:, offset:offset + width]
    return box_sum, box_count


def _window_max(values: np.ndarray, bins: np.ndarray, first: np.ndarray, window: int) -> np.ndarray:
    """[rows, max(bins)]: at bin j of each row, the highest of ``values`` at bins j + first ...
    j + first + window - 1, round each row's circle of ``bins`` (the whole circle where the
    window covers it)."""
    from scipy.ndimage import maximum_filter1d

    width = values.shape[1]
    index = (np.arange(width + window)[None, :] + first[:, None]) % bins[:, None]
    extended = np.take_along_axis(values, index, axis=1)
    # Left-aligned window [j, j + window): scipy centres it on j + window // 2 unless told otherwise.
    highest = maximum_filter1d(extended, window, axis=1, mode="nearest", origin=-(window // 2))[:, :width]
    whole = window >= bins
    highest[whole] = np.max(np.where(np.arange(width)[None, :] < bins[:, None], values, -np.inf), axis=1)[whole, None]
    return highest


def segmented_search_snr(curve: np.ndarray, segment_starts, skip_days: tuple[float, float] = GAP_SKIP_DAYS) -> float:
    """The highest box S/N of a blind search over a Kaggle-layout row that is told where its
    closed-up gaps are but not how much time each skipped: what the cadences alone allow.

    The row is cut at ``segment_starts`` (the cadences after each gap). Within a segment the
    cadences run at ``CADENCE_DAYS``; across a gap the transits' phase jumps by the unknown time
    skipped, anywhere in ``skip_days`` (the generator's range), so each segment's phase is a
    trial of its own, within that range of the one before. For every trial period and duration of
    the classical grid (``period_grid`` of the row's cadence span, ``DURATIONS_DAYS``, boxes no
    longer than ``MAX_DUTY_CYCLE`` of their period, phases at ``OVERSAMPLE`` a duration), a
    dynamic programme over the segments finds the phases whose boxes together hold the largest
    flux deficit; the S/N is that deficit over the root of the boxes' cadence count (the
    count averaged over each segment's boxes that hold a cadence), in units of the per-cadence
    noise. With no gap it is the classical grid's box search over the cadences; at a planet's
    true phases it reads the planet's matched-filter S/N, however the gaps broke its period.

    Args:
        curve: [cadences] flux in units of its per-cadence noise (a transit is negative).
        segment_starts: cadences where a new segment begins (0 and the row's length are implied).
        skip_days: (least, most) days a gap skips.
    """
    curve = np.asarray(curve, dtype=np.float64)
    bounds = np.unique(np.concatenate([[0], np.asarray(segment_starts, dtype=np.int64), [curve.size]]))
    periods = period_grid(curve.size * CADENCE_DAYS)
    best = -np.inf
    for duration in DURATIONS_DAYS:
        trial = periods[duration <= MAX_DUTY_CYCLE * periods]
        if not trial.size:
            continue
        step = duration / OVERSAMPLE
        bins = np.ceil(trial / step).astype(np.int64)
        valid = np.arange(bins.max())[None, :] < bins[:, None]
        # Bins between the earliest and the latest phase the previous segment's box can have,
        # a bin either side for the binning.
        window = int(np.ceil((skip_days[1] - skip_days[0]) / step)) + 2
        deficit, count = None, np.zeros(trial.size)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            box_sum, box_count = _box_sums(-curve[start:stop], trial, step, bins)
            box_sum[~valid] = -np.inf
            covered = (box_count > 0) & valid
            count += np.sum(box_count * covered, axis=1) / np.maximum(covered.sum(axis=1), 1)
            if deficit is not None:
                # The previous segment's box starts (its length plus the skip) later in phase.
                first = np.floor(((previous_length * CADENCE_DAYS + skip_days[0]) % trial) / step).astype(np.int64) - 1
                box_sum = box_sum + _window_max(deficit, bins, first % bins, window)
            deficit, previous_length = box_sum, stop - start
        best = max(best, float(np.max(np.max(deficit, axis=1) / np.sqrt(np.maximum(count, 1e-12)))))
    return best


def _segmented_peak_one(curve: np.ndarray, time: np.ndarray) -> float:
    return segmented_search_snr(curve, gap_ends(time))


def white_noise_peak_snr_over_cadences(times: np.ndarray, workers: int = 1, seed: int = 0) -> np.ndarray:
    """[rows] the highest S/N ``segmented_search_snr`` finds in pure white noise on rows cut as
    the generator cut them (its gaps from ``times``, which it is told), searching the cadences
    as a Kaggle-layout row allows: ``white_noise_peak_snr``'s count of trials without the time
    stamps. The same seed and times give the same figures (the noise is ``white_noise_peak_snr``'s).
    """
    times = np.asarray(times, dtype=np.float64)
    noise = np.random.default_rng([seed, 17]).standard_normal(times.shape)
    return segmented_peak_snr(noise, times, workers)


def segmented_peak_snr(curves: np.ndarray, times: np.ndarray, workers: int = 1) -> np.ndarray:
    """[rows] the highest S/N ``segmented_search_snr`` finds in each row of ``curves`` (model
    inputs: the first channel is searched), told where the row's closed-up gaps are (from its time
    stamps ``times``) but searching its cadences: the ideal observer's search over the cadences,
    on curves instead of white noise (``bench/search_on_curves.py``)."""
    return np.array(_map_rows(_segmented_peak_one, first_channel(curves), np.asarray(times, dtype=np.float64), workers),
                    dtype=np.float64)


def masked_at_gaps(curves: np.ndarray, times: np.ndarray, cadences: int) -> np.ndarray:
    """[rows, cadences] the first channel of ``curves`` (model inputs) with every cadence within
    ``cadences`` of a closed-up gap (``gap_ends`` of each row's ``times``) set to 0, the detrended
    level: the residuals of a trend fitted across each gap taken out (``bench/search_on_curves.py``).

    >>> masked_at_gaps(np.ones((1, 8, 2)), np.array([[0, 1, 2, 3, 6, 7, 8, 9.0]]), 1).tolist()
    [[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]]
    """
    out = np.array(first_channel(curves), dtype=np.float64)
    for row, time in enumerate(times):
        for gap in gap_ends(time):
            out[row, max(gap - cadences, 0):gap + cadences + 1] = 0.0
    return out


def matched_filter_snr(curves: np.ndarray, period: np.ndarray, duration: np.ndarray, time: np.ndarray) -> np.ndarray:
    """S/N of the best box at a given period and duration per row (only the phase is searched).

    With a planet's true period, duration and time stamps this is the "oracle": what a search
    that already knew where to look would see, the practical detection limit. Rows whose
    period is NaN get NaN.

    Args:
        curves: [rows, cadences] preprocessed curves (a trailing channel of 1 is accepted).
        period, duration: [rows] days.
        time: [rows, cadences] days of each cadence (the true ones, gaps included).
    """
    from astropy.timeseries import BoxLeastSquares

    curves = first_channel(curves)
    out = np.full(len(curves), np.nan)
    for row in np.flatnonzero(np.isfinite(period) & np.isfinite(duration)):
        width = float(min(duration[row], 0.5 * period[row]))
        result = BoxLeastSquares(np.asarray(time[row], dtype=np.float64), curves[row].astype(np.float64)).power(
            [float(period[row])], [width], objective="snr", oversample=10)
        out[row] = float(np.asarray(result.power)[0])
    return out


def matches_ephemeris(found_period: np.ndarray, found_epoch: np.ndarray, period: np.ndarray, epoch: np.ndarray,
                      duration: np.ndarray, tolerance: float = PERIOD_TOLERANCE) -> np.ndarray:
    """[rows] bool: whether a search found the planet, as survey pipelines match a detection to an
    injection: its period within ``tolerance`` (relative) of the planet's or of a harmonic
    (``HARMONICS``: a third to three times it), and one of its first three events within a
    transit duration of one of the planet's transits. All in the same time frame (days).

    >>> matches_ephemeris(np.array([6.0, 3.0, 3.0, 4.5]), np.array([1.0, 4.0, 2.5, 1.0]),
    ...                   np.full(4, 3.0), np.full(4, 1.0), np.full(4, 0.2)).tolist()
    [True, True, False, False]
    """
    found_period, found_epoch, period, epoch, duration = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (found_period, found_epoch, period, epoch, duration)))
    ratio = found_period / period
    harmonic = np.any([np.abs(ratio - h) <= tolerance * h for h in HARMONICS], axis=0)
    on_transit = np.zeros(ratio.shape, dtype=bool)
    for event in range(3):
        on_transit |= np.abs(phase_offset(found_epoch + event * found_period, period, epoch)) <= duration
    return harmonic & on_transit


def fold(curve: np.ndarray, period: float, epoch: float, cadence_days: float = CADENCE_DAYS):
    """(phase in days from mid-transit, flux) sorted by phase: the curve folded at ``period``."""
    curve = np.asarray(curve).ravel()
    phase = phase_offset(_times(curve.size, cadence_days), period, epoch)
    order = np.argsort(phase)
    return phase[order], curve[order]


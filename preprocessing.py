"""Per-curve preprocessing of light curves: pure numpy/scipy functions, vectorised over rows.

Every function takes a 2-D array ``flux[curve, cadence]`` and treats each row on its own, so
the same code serves training, evaluation and prediction, and nothing is fitted across curves
(no statistic of the test split can leak into training). Stage [4/7] runs ``preprocess``:

1. ``robust_trend`` / detrending: a smooth trend is subtracted: a sliding local quadratic over
   ``detrend_window`` cadences, refitted with cadences more than ``mask_sigma`` robust sigmas
   from the previous trend left out. The quadratic follows the curvature of spot modulation
   (a running median or mean flattens its peaks by several percent of the amplitude); leaving
   masked cadences out, rather than filling them, keeps a transit from dragging the trend down.
   Measured (tests/test_preprocessing.py): a 200 ppm, 6-hour transit on a 1 %, 5-day spot
   modulation with 50 ppm noise keeps a median 100 % of its depth (at worst 75 % over 12
   placements), and the modulation's residual is at the noise level. A step of the level (a
   closed-up gap of a Kaggle-layout row, where the star and the instrument come back at another
   level, or a sensitivity dropout) is found first (``find_steps``) and taken out of the curve
   before the fit, as the Kepler pipeline corrects discontinuities: a quadratic fitted across a
   jump leaves a one-sided dip beside it that looks like a transit. Off unless ``step_sigma``
   is set: with it the default run found no more planets on unseen curves (docs/detector_levers.md).
2. ``robust_normalise``: residual / (1.4826 * median absolute deviation), so values are in units
   of the curve's own noise. Shift and scale of the input (e-/s around a mean, ppm, relative
   flux) drop out exactly.
3. ``clip_and_compress``: upward outliers (flares, cosmic rays) are clipped at ``upper_clip``
   sigmas (transits only go down); deep dips are compressed with ``s * asinh(x / s)``, linear
   within a few sigmas and logarithmic beyond, so a 30 % eclipse and a 300 ppm transit both fit
   one numeric range while their order is kept.

Loading uses more functions from here, applied identically at training and prediction time:
``fill_missing`` (linear interpolation over NaN/inf inside a Kaggle-layout row), ``bin_onto_grid``
(every curve, whatever its cadence, is averaged by time onto the model's grid of
``grid_cadence_minutes``; a Kaggle Kepler row of 3197 points at 29.4 minutes passes unchanged) and
``window_starts`` (a curve longer than ``sequence_length`` grid points becomes several windows).

Grid points with no data (gaps, and the padding after a curve shorter than a window) are NaN up
to ``preprocess``, which keeps them out of every statistic: they get no weight in the trend fit,
no window of the fit reaches across a gap longer than ``max_gap_days``, the noise level is
measured on observed points only, and they reach the model as 0 (the normalised mean: no signal).

The settings are a ``PreprocessingConfig``, saved as JSON (``models/preprocessor_hybrid.json``)
so prediction reproduces exactly this preprocessing.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import fingerprints
from memory import available_cores

# 1.4826 * MAD is the standard deviation of Gaussian noise.
MAD_TO_SIGMA = 1.4826
# Cadences averaged when looking for shallow dips to keep out of the trend fit (2.5 hours).
MASK_SMOOTHING = 5
# Kepler long cadence, the time step of the built-in data and of Kaggle's files.
KEPLER_LONG_CADENCE_MINUTES = 29.4244
# Named quality masks, as lightkurve 2.x defines them (``KeplerQualityFlags`` and
# ``TessQualityFlags`` in lightkurve/utils.py); an integer sets the bits directly. K2 uses Kepler's
# flags. Kepler "default": attitude tweak, safe mode, coarse point, earth point, desaturation,
# manual exclude, detector anomaly, no data, thruster firing. TESS "default": attitude tweak,
# safe mode, coarse point, earth point, Argabrightening, desaturation, manual exclude, impulsive
# outlier, bad calibration. "hard" adds the cosmic-ray, scattered-light and (K2) possible-thruster
# flags; "hardest" masks any flag.
QUALITY_BITMASKS = {
    "none": {"kepler": 0, "tess": 0},
    "default": {"kepler": 1130799, "tess": 17087},
    "hard": {"kepler": 1664431, "tess": 24319},
    "hardest": {"kepler": 2096639, "tess": 65535},
}


@dataclass(frozen=True)
class PreprocessingConfig:
    """Settings of loading and per-curve preprocessing; all lengths are in cadences."""

    sequence_length: int = 3197        # Kepler long cadence, 29.4 min, about 65 days
    max_missing_fraction: float = 0.5  # rows missing more than this are dropped
    detrend_window: int = 49           # 1 day: four times a 6-hour transit, shorter than spot periods
    # More input channels: the same curve detrended over each of these windows too (channel 0 is
    # ``detrend_window``'s). A short window follows the star, a long one keeps more of a long,
    # weak transit; one network reading both (1 day and 1.5 days) finds more planets than one
    # reading either (docs/detector_levers.md). Empty: one channel, as before 1.9. Not given: one
    # window 1.5 times ``detrend_window`` (73 cadences beside 49), if it fits in the sequence.
    extra_detrend_windows: tuple[int, ...] | None = None
    trend_bin: int = 3                 # cadences summed per point of the masked trend fit (speed)
    detrend_iterations: int = 2        # masked refits after the first, unmasked one
    mask_sigma: float = 3.0            # points this far from the trend are kept out of the fit
    # Steps: a jump of the level this many robust sigmas high, not undone by an opposite jump
    # within two detrending windows (a transit's egress), is taken out of the curve before the
    # trend fit (``find_steps``): a closed-up gap of a Kaggle-layout row, a sensitivity dropout.
    # A fit across one leaves a false dip beside it. Off (0) by default: at 6 the default run
    # found no more planets on unseen curves (docs/detector_levers.md).
    step_sigma: float = 0.0
    # The first mask (of the unmasked first fit) takes only cadences that also stand out from a
    # running median over the window, which a transit or flare shorter than half the window
    # hardly moves. A deep transit pulls the first fit down (a flare up), with lobes of the other
    # sign half a window away; before 1.14 those lobes were masked as dips too, less than half of
    # each window beside the transit was left, and the fit kept the pulled trend: every deep
    # transit read 30-50 % shallow between two +5 sigma shoulders, and a flare had false dips
    # beside it (docs/detector_levers.md). False: as before 1.14.
    median_first_mask: bool = True
    upper_clip: float = 5.0            # upward outliers (flares, cosmic rays) clipped here, in sigmas
    compress_scale: float = 10.0       # asinh compression: linear within about this many sigmas
    # Survey files (FITS, time-series CSV) and time on the grid; see the module docstring.
    grid_cadence_minutes: float = KEPLER_LONG_CADENCE_MINUTES  # the model's time step
    row_cadence_minutes: float = KEPLER_LONG_CADENCE_MINUTES   # time between a Kaggle-layout row's values
    max_gap_days: float = 0.5          # no trend-fit window reaches across a longer gap
    quality_bitmask: str = "default"   # none, default, hard, hardest (lightkurve's) or an integer
    flux_column: str = ""              # FITS/CSV flux column; "" = PDCSAP_FLUX where it exists

    def __post_init__(self):
        if self.extra_detrend_windows is not None:
            # JSON (--config, the saved settings) gives lists; keep the config hashable and comparable.
            object.__setattr__(self, "extra_detrend_windows", tuple(int(w) for w in self.extra_detrend_windows))
        if self.sequence_length < 16:
            raise ValueError(f"sequence_length must be at least 16, got {self.sequence_length}")
        if not 0.0 < self.max_missing_fraction < 1.0:
            raise ValueError(f"max_missing_fraction must be between 0 and 1, got {self.max_missing_fraction}")
        if self.detrend_window < 5 or self.detrend_window % 2 == 0:
            raise ValueError(f"detrend_window must be an odd number of at least 5, got {self.detrend_window}")
        if self.detrend_window > self.sequence_length:
            raise ValueError(f"detrend_window ({self.detrend_window}) must not exceed "
                             f"sequence_length ({self.sequence_length})")
        if not 1 <= self.trend_bin <= self.detrend_window // 5:
            raise ValueError(f"trend_bin must be between 1 and detrend_window/5, got {self.trend_bin}")
        for window in self.extra_windows:
            if window < 5 * self.trend_bin or window % 2 == 0 or window > self.sequence_length:
                raise ValueError(f"extra_detrend_windows must be odd numbers of cadences from 5 * trend_bin "
                                 f"({5 * self.trend_bin}) to sequence_length ({self.sequence_length}), got {window}")
        if not isinstance(self.median_first_mask, bool):
            raise ValueError(f"median_first_mask must be true or false, got {self.median_first_mask!r}")
        if not 0.0 <= self.step_sigma < 1e6:
            raise ValueError(f"step_sigma must be 0 (off) or a positive number of sigmas, got {self.step_sigma}")
        for name in ("mask_sigma", "upper_clip", "compress_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.detrend_iterations < 0:
            raise ValueError(f"detrend_iterations must be >= 0, got {self.detrend_iterations}")
        for name in ("grid_cadence_minutes", "row_cadence_minutes", "max_gap_days"):
            if not 0.0 < getattr(self, name) < 1e6:
                raise ValueError(f"{name} must be a positive number of minutes or days, got {getattr(self, name)}")
        quality_bits(self.quality_bitmask, "kepler")  # raises ValueError naming the setting

    @property
    def extra_windows(self) -> tuple[int, ...]:
        """The windows of the channels after the first: ``extra_detrend_windows``, or, where that
        is not given, one 1.5 times ``detrend_window`` (the nearest odd number) if it fits."""
        if self.extra_detrend_windows is not None:
            return self.extra_detrend_windows
        longer = _nearest_odd(1.5 * self.detrend_window)
        return (longer,) if longer <= self.sequence_length else ()

    @property
    def channels(self) -> int:
        """Input channels of the model: one per detrending window."""
        return 1 + len(self.extra_windows)

    @property
    def grid_cadence_days(self) -> float:
        return self.grid_cadence_minutes / 1440.0

    def to_json(self) -> dict:
        """Every setting, the windows as used: a saved model reads its channels as it was trained."""
        return dataclasses.asdict(self) | {"extra_detrend_windows": list(self.extra_windows)}

    def fingerprint(self) -> dict:
        """The settings as the cache and checkpoint fingerprints record them.

        Settings added since 1.2 are recorded only where they differ from the values that load as
        1.1 did, so a run started with 1.1 (whose curves they do not change) resumes as it was.
        Those values are the defaults, except ``extra_detrend_windows``: since 1.9 a default run
        has two channels, so a run started before 1.9 resumes with ``[]`` set in ``--config``.
        The windows are recorded as used (``extra_windows``), given or not.
        """
        return fingerprints.settings(dataclasses.replace(self, extra_detrend_windows=self.extra_windows),
                                     _ADDED_SINCE_1_2)

    @classmethod
    def from_json_file(cls, path: Path) -> "PreprocessingConfig":
        """Read settings saved by training; raises ValueError naming the file if they don't fit."""
        data = json.loads(Path(path).read_text())
        settings = data.get("preprocessing", data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"{path}: unknown preprocessing settings {sorted(unknown)}")
        # Training saves every setting, so one missing is one its version did not have: the
        # model was trained as that version preprocessed, not with today's default.
        return cls(**(_ADDED_SINCE_1_2 | settings))


# Settings added since 1.2, with the value that loads and preprocesses as 1.1 did.
_ADDED_SINCE_1_2 = {"grid_cadence_minutes": KEPLER_LONG_CADENCE_MINUTES,
                    "row_cadence_minutes": KEPLER_LONG_CADENCE_MINUTES, "max_gap_days": 0.5,
                    "quality_bitmask": "default", "flux_column": "", "extra_detrend_windows": (),
                    "step_sigma": 0.0, "median_first_mask": False}


def _nearest_odd(value: float) -> int:
    return 2 * int(round((value - 1) / 2)) + 1


def quality_bits(bitmask: str, mission: str) -> int:
    """The quality bits to mask for ``mission`` ("kepler" covers K2; "tess"): a named mask or an integer.

    Raises:
        ValueError: naming the setting, for a name it does not know.
    """
    text = str(bitmask).strip().lower()
    if text in QUALITY_BITMASKS:
        return QUALITY_BITMASKS[text]["tess" if mission == "tess" else "kepler"]
    if text.isdigit():
        return int(text)
    raise ValueError(f"quality_bitmask must be one of {', '.join(QUALITY_BITMASKS)} or a non-negative integer, "
                     f"got {bitmask!r}")


def bin_onto_grid(time: np.ndarray, flux: np.ndarray, cadence_days: float,
                  flux_err: np.ndarray | None = None, start: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Average a time series onto a regular grid of ``cadence_days``, by time.

    Grid point k is centred at ``start + k * cadence_days`` (``start``: the first time stamp
    when None) and averages the samples within half a cadence of it, weighted by
    1 / ``flux_err``**2 where errors are given (finite and positive; others get the median
    weight). A series already on the grid passes unchanged; one of 2-minute cadence is averaged
    about 15 samples a point. Samples with a non-finite time or flux are ignored.

    Args:
        time: [samples] time stamps in days, in any order.
        flux: [samples] flux, any units.
        cadence_days: grid step.
        flux_err: [samples] flux uncertainties, or None.
        start: time of grid point 0.

    Returns:
        (binned [points] float64, NaN where no sample fell; samples per point [points] int64),
        from grid point 0 to the last point that holds a sample.
    """
    time, flux = np.asarray(time, np.float64), np.asarray(flux, np.float64)
    good = np.isfinite(time) & np.isfinite(flux)
    if not good.any():
        return np.empty(0), np.empty(0, np.int64)
    if start is None:
        start = float(time[good].min())
    index = np.floor((time[good] - start) / cadence_days + 0.5).astype(np.int64)
    keep = index >= 0
    index, values = index[keep], flux[good][keep]
    if flux_err is None:
        weight = np.ones(values.size)
    else:
        error = np.asarray(flux_err, np.float64)[good][keep]
        usable = np.isfinite(error) & (error > 0)
        weight = np.where(usable, 1.0 / np.where(usable, error, 1.0) ** 2, np.nan)
        weight = np.where(usable, weight, np.median(weight[usable]) if usable.any() else 1.0)
    points = int(index.max()) + 1 if index.size else 0
    counts = np.bincount(index, minlength=points)
    total = np.bincount(index, weights=weight, minlength=points)
    with np.errstate(invalid="ignore", divide="ignore"):
        binned = np.bincount(index, weights=weight * values, minlength=points) / total
    return np.where(counts > 0, binned, np.nan), counts


def window_starts(points: int, length: int) -> list[int]:
    """First grid point of each window of ``length`` points that together cover ``points``.

    A curve of at most ``length`` points is one window (padded after its end). A longer one
    is cut into consecutive windows; the last one ends at the curve's end and overlaps the one
    before it, so that no window is mostly padding.

    >>> window_starts(3197, 3197), window_starts(4000, 3197), window_starts(7000, 3197)
    ([0], [0, 803], [0, 3197, 3803])
    """
    if points <= length:
        return [0]
    starts = list(range(0, points - length, length))
    return starts + [points - length]


def cut_windows(grid: np.ndarray, length: int) -> tuple[np.ndarray, list[int]]:
    """Cut each row of ``grid`` [rows, points] into the windows of ``window_starts``.

    Returns:
        (windows [rows, windows, length] float32, NaN after the end of a row shorter than a
        window; the first grid point of each window).
    """
    starts = window_starts(grid.shape[1], length)
    windows = np.full((grid.shape[0], len(starts), length), np.nan, dtype=np.float32)
    for number, start in enumerate(starts):
        part = grid[:, start:start + length]
        windows[:, number, :part.shape[1]] = part
    return windows, starts


def fill_missing(flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaN and +-inf in each row by linear interpolation between its finite neighbours.

    Leading and trailing gaps take the nearest finite value. Rows with no finite value at all
    are left as NaN (the caller drops them). Vectorised: the previous and next finite index of
    every cadence come from running max/min over the row.

    Args:
        flux: [rows, cadences] float array.

    Returns:
        (filled copy, number of filled cadences per row).
    """
    flux = np.asarray(flux)
    finite = np.isfinite(flux)
    missing = (~finite).sum(axis=1)
    if not missing.any():
        return flux.copy(), missing
    n = flux.shape[1]
    index = np.arange(n)
    previous = np.maximum.accumulate(np.where(finite, index, -1), axis=1)
    following = np.minimum.accumulate(np.where(finite, index, n)[:, ::-1], axis=1)[:, ::-1]
    has_previous = previous >= 0
    has_following = following < n
    previous_c = np.clip(previous, 0, n - 1)
    following_c = np.clip(following, 0, n - 1)
    rows = np.arange(flux.shape[0])[:, None]
    left = flux[rows, previous_c]
    right = flux[rows, following_c]
    span = np.where(following > previous, following - previous, 1)
    weight = (index - previous) / span
    interpolated = left + (right - left) * weight
    filled = np.where(has_previous & has_following, interpolated, np.where(has_previous, left, right))
    return np.where(finite, flux, filled).astype(flux.dtype, copy=False), missing


def robust_sigma(values: np.ndarray) -> np.ndarray:
    """Per-row noise estimate 1.4826 * MAD, floored so a constant row does not divide by zero."""
    deviation = np.abs(values - np.median(values, axis=1, keepdims=True))
    sigma = MAD_TO_SIGMA * np.median(deviation, axis=1)
    # A flat (or mostly flat) row has MAD 0: fall back to the standard deviation, then to 1.
    fallback = np.where(values.std(axis=1) > 0, values.std(axis=1), 1.0)
    return np.where(sigma > 0, sigma, fallback)


def point_to_point_sigma(flux: np.ndarray) -> np.ndarray:
    """Per-row white-noise level from the robust scatter of successive differences.

    Differences cancel the star's slow variability, so this measures the noise alone; the MAD
    of a difference of two independent Gaussians is sqrt(2) times that of one.
    """
    steps = np.abs(np.diff(flux, axis=1))
    if np.issubdtype(steps.dtype, np.floating) and np.isnan(steps).any():  # grid points without data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row without two neighbouring points
            sigma = MAD_TO_SIGMA * np.nanmedian(steps, axis=1) / np.sqrt(2.0)
        return np.where(np.isfinite(sigma), sigma, 0.0)
    return MAD_TO_SIGMA * np.median(steps, axis=1) / np.sqrt(2.0)


def noise_on_timescale(flux: np.ndarray, cadences: np.ndarray, window: int = 49) -> np.ndarray:
    """Per-row noise that a signal lasting ``cadences`` competes with, expressed per cadence.

    The Kepler pipeline measures a transit's S/N against the star's CDPP: the scatter of the
    detrended light curve averaged over the transit's duration, which counts granulation and
    whatever variability the detrending leaves on that timescale, not only the white noise.
    Here: each row minus a local quadratic over ``window`` cadences (a Savitzky-Golay filter,
    the first fit of ``robust_trend``; 49 cadences = 1 day), averaged over ``cadences[row]``
    consecutive cadences, and the robust sigma of those averages divided by what the same
    filters leave of unit white noise. So white noise of sigma gives sigma at every timescale
    (the filters' own loss divided out); noise correlated on the signal's timescale gives more.
    A signal's S/N is then sqrt(sum(signal**2)) / this, the white-noise matched-filter S/N when
    the noise is white.

    Args:
        flux: [rows, n] curves, any units; NaN or inf where there is no data (filled for the
            trend, left out of the averages).
        cadences: [rows] the signal's duration in cadences (rounded, at least 1, at most n // 2).
        window: odd detrending window in cadences, at most n.

    Returns:
        [rows] float64, in the units of ``flux``; 0 for a row without ``cadences`` consecutive
        observed cadences.
    """
    from scipy import signal

    flux = np.asarray(flux, dtype=np.float64)
    rows, n = flux.shape
    observed = np.isfinite(flux)
    filled, _ = fill_missing(flux)
    filled = np.where(np.isfinite(filled), filled, 0.0)
    residual = np.where(observed, filled - signal.savgol_filter(filled, window, polyorder=2, axis=1, mode="interp"), 0.0)
    running = np.concatenate([np.zeros((rows, 1)), np.cumsum(residual, axis=1)], axis=1)
    counts = np.concatenate([np.zeros((rows, 1), dtype=np.int64), np.cumsum(observed, axis=1)], axis=1)
    steps = np.clip(np.rint(np.asarray(cadences, dtype=np.float64)), 1, max(1, n // 2)).astype(np.int64)
    high_pass = -signal.savgol_coeffs(window, polyorder=2)
    high_pass[window // 2] += 1.0
    out = np.empty(rows)
    for k in np.unique(steps):
        at = np.flatnonzero(steps == k)
        sums = running[at, k:] - running[at, :-k]
        complete = (counts[at, k:] - counts[at, :-k]) == k  # averages over observed cadences only
        white = np.sqrt((np.convolve(np.full(k, 1.0 / k), high_pass) ** 2).sum())  # of unit white noise
        sigma = nan_robust_sigma(np.where(complete, sums / k, np.nan)) / white
        out[at] = np.where(complete.any(axis=1), sigma, 0.0)  # 0 as point_to_point_sigma: no data to measure
    return out


def local_quadratic_trend(flux: np.ndarray, keep: np.ndarray, window: int, bin_size: int,
                          fallback: np.ndarray, segment: np.ndarray | None = None) -> np.ndarray:
    """Least-squares quadratic over a sliding ``window``, fitted only to cadences where ``keep``.

    Masked cadences (a transit, a flare) get no weight, so the fit bridges them with the curve on
    either side instead of being pulled into them. For speed the sums run over bins of
    ``bin_size`` cadences (each bin is one point, its mean at its centre, used only if none of
    its cadences is masked); each bin's quadratic is evaluated at its own cadences and blended linearly with the
    next bin's, which keeps the trend continuous. The 3x3 normal equations of every bin of every
    row are solved at once by Cramer's rule. Where less than half of a window is kept, a
    quadratic bridging the hole would extrapolate wildly: there ``fallback`` is returned.

    Args:
        flux: [rows, cadences] float64.
        keep: [rows, cadences] bool, False where a cadence must not influence the fit.
        window: fit span in cadences.
        bin_size: cadences per bin.
        fallback: [rows, cadences] trend to use where too little is kept.
        segment: [rows, cadences] int, or None: stretches of a curve between long gaps
            (``segment_ids``; -1 in none); a bin's window then takes only bins of its own
            stretch, so no fit reaches across a gap, and a stretch's end counts as the array's.

    Returns:
        Trend, same shape as ``flux``.
    """
    rows, n = flux.shape
    n_bins = -(-n // bin_size)
    pad = ((0, 0), (0, n_bins * bin_size - n))
    # A bin counts only if all its cadences are kept: a partly masked bin's mean would sit off
    # its centre, which on a steep spot slope (300 ppm per cadence is common) biases the fit.
    keep_bin = np.pad(keep, pad, constant_values=False).reshape(rows, n_bins, bin_size).all(axis=2)
    w = keep_bin.astype(np.float64)
    wy = np.pad(flux, pad).reshape(rows, n_bins, bin_size).mean(axis=2) * w
    half = max(1, window // bin_size // 2)
    # Offsets scaled to [-1, 1] keep the normal equations well conditioned.
    offset = np.arange(-half, half + 1, dtype=np.float64) / half
    complete = np.pad(np.ones((1, n), dtype=bool), pad).reshape(1, n_bins, bin_size).all(axis=2)
    if segment is None:
        from scipy import ndimage  # here, not at the top: a resumed run never preprocesses (0.8 s to import)

        s0, s1, s2, s3, s4 = (ndimage.correlate1d(w, offset**m, axis=1, mode="constant") for m in range(5))
        t0, t1, t2 = (ndimage.correlate1d(wy, offset**m, axis=1, mode="constant") for m in range(3))
        present = ndimage.correlate1d(complete.astype(np.float64), np.ones(2 * half + 1), axis=1, mode="constant")
    else:
        s0, s1, s2, s3, s4, t0, t1, t2, present = _segment_window_sums(
            w, wy, complete, np.pad(segment, pad, constant_values=-1).reshape(rows, n_bins, bin_size).max(axis=2), offset)
    minor_a, minor_b, minor_c = s2 * s4 - s3 * s3, s1 * s4 - s3 * s2, s1 * s3 - s2 * s2
    det = s0 * minor_a - s1 * minor_b + s2 * minor_c
    solvable = (s0 >= 0.5 * present) & (np.abs(det) > 1e-12 * np.maximum(s0, 1.0) ** 3)
    safe_det = np.where(solvable, det, 1.0)
    c0 = (t0 * minor_a - s1 * (t1 * s4 - s3 * t2) + s2 * (t1 * s3 - s2 * t2)) / safe_det
    c1 = (s0 * (t1 * s4 - t2 * s3) - t0 * minor_b + s2 * (s1 * t2 - t1 * s2)) / safe_det
    c2 = (s0 * (s2 * t2 - s3 * t1) - s1 * (s1 * t2 - t1 * s2) + t0 * minor_c) / safe_det
    # Coefficients are per offset unit (half bins); convert to per-bin units.
    c1, c2 = c1 / half, c2 / half**2
    # Position of every cadence in bin units (bin j's centre at j), its bin and the next one.
    position = (np.arange(n) - (bin_size - 1) / 2.0) / bin_size
    this_bin = np.clip(np.floor(position).astype(np.int64), 0, n_bins - 1)
    next_bin = np.minimum(this_bin + 1, n_bins - 1)
    blend = np.clip(position - this_bin, 0.0, 1.0)
    u, v = position - this_bin, position - next_bin
    here = c0[:, this_bin] + u * (c1[:, this_bin] + u * c2[:, this_bin])
    there = c0[:, next_bin] + v * (c1[:, next_bin] + v * c2[:, next_bin])
    usable_here, usable_there = solvable[:, this_bin], solvable[:, next_bin]
    trend = np.where(usable_here & usable_there, here * (1.0 - blend) + there * blend, fallback)
    if segment is not None:
        # At a stretch's end one neighbouring bin lies in the gap: its neighbour's fit alone serves.
        trend = np.where(usable_here & ~usable_there, here, np.where(~usable_here & usable_there, there, trend))
    return trend


def _segment_window_sums(w, wy, complete, segment, offset):
    """The window sums of ``local_quadratic_trend``, each over the bins of the centre bin's segment only.

    The same sums as its ``correlate1d`` calls (sum over the window of weight * offset**m),
    written out offset by offset so that a bin of another segment adds nothing.
    """
    rows, n_bins = w.shape
    half = (offset.size - 1) // 2
    s = [np.zeros((rows, n_bins)) for _ in range(5)]
    t = [np.zeros((rows, n_bins)) for _ in range(3)]
    present = np.zeros((rows, n_bins))
    for step, x in zip(range(-half, half + 1), offset):
        lo, hi = max(0, -step), min(n_bins, n_bins - step)  # centres whose neighbour j + step exists
        if lo >= hi:
            continue
        same = (segment[:, lo + step:hi + step] == segment[:, lo:hi]) & (segment[:, lo:hi] >= 0)
        weight, value = w[:, lo + step:hi + step] * same, wy[:, lo + step:hi + step] * same
        for m in range(5):
            s[m][:, lo:hi] += weight * x**m
        for m in range(3):
            t[m][:, lo:hi] += value * x**m
        present[:, lo:hi] += complete[:, lo + step:hi + step] * same
    return (*s, *t, present)


def segment_ids(observed: np.ndarray, max_gap: float) -> np.ndarray:
    """Number each stretch of a curve between gaps of more than ``max_gap`` unobserved cadences.

    Args:
        observed: [rows, cadences] bool, False where there is no data.
        max_gap: longest run of missing cadences that a trend window may bridge.

    Returns:
        [rows, cadences] int: 0 for the first stretch, 1 after the first long gap, ...; -1
        inside a long gap and before the first or after the last observed cadence (as outside
        the array: no stretch). A short gap belongs to its stretch.

    >>> segment_ids(np.array([[0, 1, 1, 0, 0, 0, 1, 0, 1, 0]], bool), 2)
    array([[-1,  0,  0, -1, -1, -1,  1,  1,  1, -1]])
    """
    rows, n = observed.shape
    segment = np.full((rows, n), -1, dtype=np.int64)
    for row in range(rows):
        seen = np.flatnonzero(observed[row])
        if seen.size == 0:
            continue
        long_gap = np.diff(seen) - 1 > max_gap
        at_seen = np.concatenate([[0], np.cumsum(long_gap)])
        # Each cadence takes the stretch of the observed cadence before it, unless a long gap
        # starts there (or it lies after the last one).
        before = np.searchsorted(seen, np.arange(n), side="right") - 1
        inside = (before >= 0) & (np.arange(n) <= seen[-1])
        stretch = np.where(inside, at_seen[np.maximum(before, 0)], -1)
        in_long_gap = inside & (np.arange(n) != seen[np.maximum(before, 0)]) & \
            np.r_[long_gap, False][np.maximum(before, 0)]
        segment[row] = np.where(in_long_gap, -1, stretch)
    return segment


def step_jumps(flux: np.ndarray, half: int) -> np.ndarray:
    """The jump of each row at each cadence boundary: a straight line fitted to the ``half``
    cadences after it minus one fitted to the ``half`` before it, both read at the boundary.

    Lines, not means, so that a star's slope adds nothing. Returns [rows, cadences - 2 * half + 1]:
    column k is the boundary before cadence k + half.

    >>> step = np.r_[np.zeros(10), np.ones(10)][None, :]
    >>> float(step_jumps(step, 4)[0, 10 - 4])
    1.0
    """
    from numpy.lib.stride_tricks import sliding_window_view

    centred = np.arange(half) - (half - 1) / 2.0
    # Least-squares line through ``half`` points read half a window from their centre.
    slope_weight = centred * (half / 2.0) / np.sum(centred**2)
    windows = sliding_window_view(flux, half, axis=1)
    before_edge = np.einsum("rkh,h->rk", windows, 1.0 / half + slope_weight)  # a window's fit at its right end
    after_edge = np.einsum("rkh,h->rk", windows, 1.0 / half - slope_weight)   # ... and at its left end
    return after_edge[:, half:] - before_edge[:, :flux.shape[1] - 2 * half + 1]


def find_steps(flux: np.ndarray, window: int, threshold: float) -> np.ndarray:
    """Where each row's level jumps and stays, and by how much: the jump at the first cadence
    after each step, 0 elsewhere.

    A step is a ``step_jumps`` (lines over a quarter of ``window`` each side) of more than
    ``threshold`` times the row's robust sigma of them, the largest within a quarter window,
    and with no jump of the opposite sign and at least half its size within two windows: a
    transit or an eclipse jumps down and back up, a closed-up gap or a dropout once. A pure
    step's own jumps beside it reach a third of it the other way, so it is not mistaken for one.

    Args:
        flux: [rows, cadences] float64 without NaN.
        window: the detrending window in cadences.
        threshold: in robust sigmas of the row's jumps.
    """
    from scipy import ndimage

    rows, n = flux.shape
    half = max(3, window // 4)
    steps = np.zeros((rows, n))
    if n < 2 * half + 1:
        return steps
    jump = step_jumps(flux, half)
    sigma = robust_sigma(jump)[:, None]
    size = np.abs(jump) / np.where(sigma > 0, sigma, np.inf)
    signed = np.sign(jump) * size
    largest = size == ndimage.maximum_filter1d(size, 2 * half + 1, axis=1, mode="constant")
    reach = 2 * window + 1
    up_near = ndimage.maximum_filter1d(np.maximum(signed, 0.0), reach, axis=1, mode="constant")
    down_near = ndimage.maximum_filter1d(np.maximum(-signed, 0.0), reach, axis=1, mode="constant")
    undone = np.where(signed > 0, down_near, up_near) > 0.5 * size
    steps[:, half:n - half + 1] = np.where((size > threshold) & largest & ~undone, jump, 0.0)
    return steps


def robust_trend(flux: np.ndarray, config: PreprocessingConfig, observed: np.ndarray | None = None) -> np.ndarray:
    """Smooth stellar and instrumental trend of each row, bridging transits and flares.

    Starts from an unmasked local quadratic (Savitzky-Golay), then ``detrend_iterations`` times
    masks dips below ``mask_sigma`` robust sigmas and spikes above twice that, and refits
    without them; where less than half of a window is left, the trend before the refit stays.
    With ``median_first_mask``, the first time a cadence is masked only if it also stands out
    so from a running median over the window (``running_median``): the unmasked fit's lobes
    beside a deep transit or a flare do not, the transit and the flare do.

    Steps (``find_steps`` with ``step_sigma``) are part of the trend: the fit runs on the curve
    with each step's jump taken out of the cadences after it (as the Kepler pipeline corrects
    discontinuities), so no window is fitted across a jump and the residual shows none. A row
    without a step is fitted exactly as with ``step_sigma`` 0.

    With ``observed``, the cadences without data get no weight in any fit, and no window
    reaches across a gap of more than ``max_gap_days`` (the first fit is then the same local
    quadratic, unmasked but for the gaps, rather than a Savitzky-Golay filter across them).

    Args:
        flux: [rows, cadences] float64 array without NaN (gaps filled by ``fill_missing``).
        config: detrend_window, trend_bin, detrend_iterations, mask_sigma, step_sigma,
            median_first_mask, max_gap_days and grid_cadence_minutes are used.
        observed: [rows, cadences] bool, False where ``flux`` was filled in; None: all observed.

    Returns:
        Trend, same shape as ``flux``.
    """
    from scipy import ndimage, signal

    level = 0.0
    if config.step_sigma > 0:
        level = np.cumsum(find_steps(flux, config.detrend_window, config.step_sigma), axis=1)
        flux = flux - level  # exactly the same numbers in a row without steps
    trend = signal.savgol_filter(flux, config.detrend_window, polyorder=2, axis=1, mode="interp")
    masked = np.zeros(flux.shape, dtype=bool)
    segment = None
    if observed is not None:
        segment = segment_ids(observed, config.max_gap_days / config.grid_cadence_days)
        masked = ~observed
        trend = local_quadratic_trend(flux, observed, config.detrend_window, config.trend_bin, trend, segment)
    for iteration in range(config.detrend_iterations):
        residual = flux - trend
        dip, spike = _outliers(residual, observed, config)
        if iteration == 0 and config.median_first_mask:
            # The unmasked fit is pulled into a deep dip or spike, and away from the curve half a
            # window either side; a running median is not, so only the dip or spike itself
            # stands out from both. (Not later: a transit longer than half the window pulls the
            # median too, and the masked fits that follow find it.)
            from_median = _outliers(flux - running_median(flux, config.detrend_window, segment), observed, config)
            dip, spike = dip & from_median[0], spike & from_median[1]
        # The mask only grows, so the iteration settles instead of oscillating.
        masked |= ndimage.maximum_filter1d(dip, size=5, axis=1) | spike
        trend = local_quadratic_trend(flux, ~masked, config.detrend_window, config.trend_bin, trend, segment)
    return trend + level if config.step_sigma > 0 else trend


def _outliers(residual: np.ndarray, observed: np.ndarray | None, config: PreprocessingConfig
              ) -> tuple[np.ndarray, np.ndarray]:
    """The cadences of a residual that ``robust_trend`` masks: (dips, spikes), bool like it."""
    from scipy import ndimage

    sigma = (robust_sigma(residual) if observed is None else nan_robust_sigma(np.where(observed, residual, np.nan)))[:, None]
    # Dips: a cadence below -mask_sigma, or a few cadences whose mean is (a matched filter
    # for transits too shallow to stand out point by point), widened by two cadences each
    # side to catch ingress and egress.
    smoothed = ndimage.uniform_filter1d(residual, size=MASK_SMOOTHING, axis=1, mode="nearest")
    dip = ((residual < -config.mask_sigma * sigma)
           | (smoothed < -config.mask_sigma * sigma / np.sqrt(MASK_SMOOTHING)))
    # Spikes (flares, cosmic rays) need twice the threshold: a first fit pulled down into a
    # transit leaves positive shoulders beside it, and masking those too would leave too
    # little of the window to fit.
    spike = residual > 2.0 * config.mask_sigma * sigma
    return dip, spike


def running_median(flux: np.ndarray, window: int, segment: np.ndarray | None = None) -> np.ndarray:
    """The median of each row over ``window`` cadences centred on each cadence (the ends repeat
    the first and last values): a robust trend, which a dip or spike shorter than half the
    window hardly moves.

    Args:
        flux: [rows, cadences] float64.
        window: odd number of cadences.
        segment: [rows, cadences] int, or None: stretches between long gaps (``segment_ids``);
            each stretch is filtered alone, its ends as the array's, and cadences in no stretch
            keep their ``flux``.

    Returns:
        [rows, cadences] float64.

    >>> running_median(np.array([[0., 0, 0, 9, 0, 0, 0]]), 3)
    array([[0., 0., 0., 0., 0., 0., 0.]])
    """
    from scipy import ndimage

    # Row by row: for one axis SciPy's median filter takes O(log window) a cadence, for a 2-D
    # array with size (1, window) O(window) (10x slower at 49 cadences).
    trend = np.array(flux, dtype=np.float64)
    for row in range(flux.shape[0]):
        if segment is None:
            trend[row] = ndimage.median_filter(flux[row], size=window, mode="nearest")
            continue
        for stretch in np.unique(segment[row][segment[row] >= 0]):
            where = np.flatnonzero(segment[row] == stretch)  # one run of cadences
            trend[row, where] = ndimage.median_filter(flux[row, where], size=window, mode="nearest")
    return trend


def nan_robust_sigma(values: np.ndarray) -> np.ndarray:
    """``robust_sigma`` of each row's finite values (NaN marks cadences without data); 1 for a row without any."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: handled below
        deviation = np.abs(values - np.nanmedian(values, axis=1, keepdims=True))
        sigma = MAD_TO_SIGMA * np.nanmedian(deviation, axis=1)
        spread = np.nanstd(values, axis=1)
    fallback = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    return np.where(np.isfinite(sigma) & (sigma > 0), sigma, fallback)


def robust_normalise(residual: np.ndarray) -> np.ndarray:
    """Centre each row on its median and divide by its robust sigma."""
    centred = residual - np.median(residual, axis=1, keepdims=True)
    return centred / robust_sigma(centred)[:, None]


def detrended_residual(block: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """float64 rows minus their trend (``robust_trend`` over ``config.detrend_window``), NaN
    where there is no data: a row with NaN is detrended around them, a row without takes the
    plain path, each row as ``preprocess`` detrends it whatever the others."""
    gappy = np.isnan(block).any(axis=1)
    if not gappy.any():
        return block - robust_trend(block, config)
    residual = np.empty(block.shape)
    if not gappy.all():
        clean = block[~gappy]
        residual[~gappy] = clean - robust_trend(clean, config)
    with_gaps = block[gappy]
    observed = np.isfinite(with_gaps)
    filled, _ = fill_missing(with_gaps)
    filled = np.where(np.isfinite(filled), filled, 0.0)  # a row without any data: all zero
    residual[gappy] = np.where(observed, filled - robust_trend(filled, config, observed), np.nan)
    return residual


def _normalise_with_gaps(residual: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Normalised rows of a residual that is NaN where there is no data (``observed`` False); 0 there on return."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without any data: all NaN
        centred = residual - np.nanmedian(residual, axis=1, keepdims=True)
    normalised = centred / nan_robust_sigma(centred)[:, None]
    return np.where(observed, normalised, 0.0)


def clip_and_compress(normalised: np.ndarray, upper_clip: float, compress_scale: float) -> np.ndarray:
    """Clip upward outliers at ``upper_clip`` and compress large values with ``s*asinh(x/s)``."""
    clipped = np.minimum(normalised, upper_clip)
    return compress_scale * np.arcsinh(clipped / compress_scale)


def _detrended_normalised(block: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """``preprocess`` of float64 rows with ``config.detrend_window``: one channel, [rows, cadences]."""
    residual = detrended_residual(block, config)
    gappy = np.isnan(block).any(axis=1)
    if not gappy.any():
        return clip_and_compress(robust_normalise(residual), config.upper_clip, config.compress_scale)
    result = np.empty(block.shape)
    if not gappy.all():
        result[~gappy] = robust_normalise(residual[~gappy])
    result[gappy] = _normalise_with_gaps(residual[gappy], np.isfinite(block[gappy]))
    return clip_and_compress(result, config.upper_clip, config.compress_scale)


def preprocess(flux: np.ndarray, config: PreprocessingConfig, out: np.ndarray | None = None,
               chunk_rows: int = 128, workers: int | None = None) -> np.ndarray:
    """Detrend, normalise, clip and compress each curve; the model's input.

    Rows are processed in chunks on a pool of threads (numpy and scipy release the GIL in
    their loops); each row's result is independent of the chunking and the thread count.

    NaN in ``flux`` marks grid points without data (gaps in a survey file, the padding after a
    short curve): those rows are detrended around them (``robust_trend`` with ``observed``),
    their noise is measured on the observed points, and the points reach the model as 0. Rows
    without NaN take the plain path, unchanged by this.

    Each curve gives one channel per detrending window (``extra_windows`` after the first), each
    exactly what ``preprocess`` gives with that window alone; channel 0 is ``detrend_window``'s.

    Args:
        flux: [rows, sequence_length] array as loaded, any units; NaN where there is no data.
        config: the preprocessing settings.
        out: float32 array [rows, sequence_length, config.channels] to write into; with one
            channel it may share memory with a float32 ``flux`` (each chunk is read before it is
            overwritten), which preprocesses in place. A new array when None.
        chunk_rows: rows per chunk: small enough for the float64 temporaries to stay in the
            CPU caches (128 rows: 1.6x faster than 2048, and 0.6 GB less memory;
            ``bench/preprocess_speed.py``).
        workers: threads; the CPU cores available to this process when None.

    Returns:
        ``out``, filled.
    """
    flux = np.asarray(flux)
    if flux.ndim != 2 or flux.shape[1] != config.sequence_length:
        raise ValueError(f"expected curves of shape [rows, {config.sequence_length}], got {flux.shape}")
    shape = flux.shape + (config.channels,)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {shape}, got {out.dtype} {out.shape}")
    # One setting per channel, each with a single window.
    settings = [dataclasses.replace(config, detrend_window=window, extra_detrend_windows=())
                for window in (config.detrend_window, *config.extra_windows)]

    def one_chunk(start: int) -> None:
        block = flux[start:start + chunk_rows].astype(np.float64)  # read before ``out`` is written
        for channel, setting in enumerate(settings):
            out[start:start + chunk_rows, :, channel] = _detrended_normalised(block, setting)

    _on_every_chunk(one_chunk, flux.shape[0], chunk_rows, workers)
    return out


def _on_every_chunk(one_chunk, rows: int, chunk_rows: int, workers: int | None = None) -> None:
    """``one_chunk(start)`` for every chunk of ``chunk_rows`` of ``rows``, on a pool of ``workers``
    threads (the CPU cores available when None; numpy and scipy release the GIL in their loops),
    or here where there is one thread or one chunk; a chunk's exception is raised here."""
    starts = range(0, rows, chunk_rows)
    workers = workers or available_cores()
    if workers == 1 or len(starts) == 1:
        for start in starts:
            one_chunk(start)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(one_chunk, starts):  # re-raises a chunk's exception here
                pass


def deepest_dip(flux: np.ndarray, config: PreprocessingConfig, rank: int = 3, chunk_rows: int = 128) -> np.ndarray:
    """Each row's deepest dip: how far its ``rank``-th lowest cadence lies below the trend
    (``detrended_residual``, as ``preprocess`` detrends it; centred on its median), in
    units of the row's point-to-point scatter (``point_to_point_sigma``). float64 [rows].

    The ``rank``-th lowest rather than the lowest, so that a single low cadence does not count.
    The scatter of neighbouring cadences is what a dip's own cadences are measured against: a
    binary's eclipses widen the spread of the residual, not the scatter between neighbours, so
    the ratio keeps their depth. Cadences without data (NaN) are left out of both. A dip deeper
    than about 20 sigmas and shorter than half the window keeps about half its depth here (as in
    ``preprocess``): the unmasked first fit sinks into it, and what that fit leaves beside the
    dip, bright shoulders (masked as spikes) and dark side lobes a little farther out (masked as
    shallow dips), is masked with it, more of the window than the masked refits allow.

    Deep eclipses make 30 % of the built-in eclipsing binaries 200 or more of these sigmas deep
    and 64 % 50 or more; 2 % of quiet stars and 10 % of planet hosts reach 50 (5000 curves of seed
    42). ``augmentation`` uses it to keep injected planets off stars with deeper dips of their own.

    >>> rng = np.random.default_rng(0)
    >>> flux = rng.normal(0.0, 1.0, (2, 500))
    >>> flux[1, 200:210] -= 12.0  # a box 12 sigmas deep
    >>> depth = deepest_dip(flux, PreprocessingConfig(sequence_length=500))
    >>> bool(depth[0] < 4.5), bool(10 < depth[1] < 15)
    (True, True)
    """
    flux = np.asarray(flux)
    setting = dataclasses.replace(config, extra_detrend_windows=())
    depth = np.empty(flux.shape[0])

    def one_chunk(start: int) -> None:
        block = flux[start:start + chunk_rows].astype(np.float64)
        residual = detrended_residual(block, setting)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row without any data
            residual -= np.nanmedian(residual, axis=1, keepdims=True)
        lowest = np.sort(residual, axis=1)[:, min(rank, block.shape[1]) - 1]  # NaN sort last
        sigma = point_to_point_sigma(block)
        depth[start:start + chunk_rows] = np.where((sigma > 0) & np.isfinite(lowest),
                                                   -lowest / np.where(sigma > 0, sigma, 1.0), 0.0)

    _on_every_chunk(one_chunk, flux.shape[0], chunk_rows)  # on a thread per core, as ``preprocess``
    return depth

"""Stage [3/7]: split the curves into train/validation/test, then augment the training hosts.

Split first, then augment: the split is stratified and seeded over the original curves, and a
split's copies are made from its own curves only (the test split's never), so no star (or a copy
of it) ever sits in two splits. Every row of every split carries ``index``, the position of its
original curve in the loaded data, which makes that checkable.

Augmentation multiplies the planet hosts of the training split (the minority class) with
transformations that keep a transit a physical transit:
    time reversal      a transit is symmetric (ingress = egress), so a reversed curve is a
                       valid curve of the same star;
    circular shift     moves the transits in time; the join is one more closed-up gap, which
                       real Kepler curves have too;
    small noise        white noise of 0.2-0.5 of the curve's own point-to-point scatter
                       (scale-free), as if the star were slightly fainter.
Each copy gets a random shift, reversal with probability 1/2 and noise with probability 1/2,
from a generator seeded by the run's seed.

Injection adds planets where there were none: ``injected_fraction`` copies per training non-host
(drawn without replacement up to 1.0) each get the transits of one synthetic planet
(``inject_planets``), at a signal-to-noise ratio drawn from ``injected_snr``, and count as hosts.
A few hundred real hosts are memorised within a few epochs (measured: best validation AUC at
epoch 3-6, then falling while the training AUC climbs to 0.99); thousands of injected ones, on
the same eclipsing binaries, flares and pulsators the network must reject, teach it the transit.
But not into stars with deep dips of their own (``injected_planet_max_dip``: their deepest dip,
``preprocessing.deepest_dip``, at most 50 point-to-point sigmas deep): beside a binary's deep
eclipses an injected transit is lost, and the copy, a host, tells the network that such a star
may be a host, while a survey's binaries are not. The planets go to the other non-hosts instead.
``injected_binary_fraction`` does the same for the commonest impostor: copies of training
non-hosts with a synthetic eclipsing binary added (``inject_eclipsing_binaries``, S/N from
``injected_binary_snr``), which stay non-hosts. ``injected_gap_fraction`` does it for the next:
copies with the marks of two more closed-up gaps (``plan_injected_gaps``: a level jump and a
thermal ramp after each), which a Kaggle-layout row cannot show as gaps, and which stay non-hosts.

The validation split gets the same two injections into its own non-hosts
(``validation_injected_fraction``, ``validation_injected_binary_fraction``), after its own
curves. A survey-like validation split has a few dozen hosts; the best epoch chosen on them was
measured to be an early one that unseen curves score worse than later epochs
(docs/detector_levers.md). With hundreds of injected hosts the choice rests on transits and
binaries the network never trained on. The decision threshold is chosen on the split's own
curves alone.

Planned here, made in stage 4. ``plan_split`` decides the split and every copy from the labels
alone (which curve each copy comes from, and its random numbers); ``data_cache.build`` then makes
the copies a chunk at a time from the loaded curves on disk, preprocesses them and writes them to
the cache, so no stage holds every curve. ``split_and_augment`` makes the same plan in memory, the
same bits, for small data sets and tests.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

import fingerprints
from errors import TrainerError
from memory import available_cores
from preprocessing import PreprocessingConfig, deepest_dip, noise_on_timescale, point_to_point_sigma
from synthetic_data import (BINARY_SECONDARY, BINARY_WIDTH, CADENCE_DAYS, binary_light, draw_binaries, draw_geometry,
                            draw_planets, log_uniform, transit_loss)

SPLITS = ("train", "val", "test")
PROGRESS_SECONDS = 10.0

log = logging.getLogger(__name__)


class SplitError(TrainerError):
    """Too few curves (of a class) to make a stratified split."""


@dataclass(frozen=True)
class SplitConfig:
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    augment_copies: int = 4       # extra copies of each training planet host
    injected_fraction: float = 2.0  # injected-planet copies per training non-host (0: none)
    injected_snr: tuple[float, float] = (10.0, 1000.0)  # S/N range of the injected transits, log-uniform
    injected_binary_fraction: float = 1.0  # injected eclipsing-binary copies per training non-host (label 0)
    # S/N range of the binaries' eclipses, log-uniform: 30-3000 since 1.15 (the planets' 10-1000
    # before). Few binaries are as faint as the planets to be found; drawn at the planets' S/N
    # they taught the network that faint trains of dips are binaries (docs/detector_levers.md).
    injected_binary_snr: tuple[float, float] = (30.0, 3000.0)
    # The injected binaries' eclipse durations (fractions of the period) and secondary depths
    # (fractions of the primary's), each drawn uniformly; the built-in binaries' ranges
    # (``synthetic_data.draw_binaries``) before 1.15. Real detached binaries also have narrower
    # eclipses and secondaries too faint to see (a cool companion), dips a planet's transits
    # resemble more: since 1.15 the ranges reach down to those.
    injected_binary_width: tuple[float, float] = (0.02, 0.12)
    injected_binary_secondary: tuple[float, float] = (0.0, 0.9)
    # Binaries fainter than this S/N keep eclipses no narrower than the built-in binaries'
    # narrowest (``widen_faint_eclipses``), so that only bright ones take the narrow end of
    # ``injected_binary_width`` (a faint narrow one without a secondary is a planet's transit
    # in all but name); 0: every one draws from the whole range.
    injected_binary_narrow_snr: float = 300.0
    # The same injections into the validation split's non-hosts, after its own curves: hundreds of
    # validation hosts instead of a survey's few, so that the best epoch is chosen on transits
    # and binaries the network never trained on rather than on a handful of hosts. The
    # validation-chosen threshold is still chosen on the split's own curves alone.
    validation_injected_fraction: float = 1.0         # injected-planet copies per validation non-host
    validation_injected_binary_fraction: float = 0.5  # injected-binary copies per validation non-host
    # The noise an injection's S/N is counted in: "point_to_point", the curve's cadence-to-cadence
    # scatter, or "transit_timescale", its noise on the timescale of the injected dips
    # (``preprocessing.noise_on_timescale``, as the built-in hosts' S/N is counted), which
    # granulation can exceed many times over: point-to-point S/N buries some injected "hosts" in
    # it. Measured side by side on two training seeds (docs/detector_levers.md): no better on unseen
    # curves, and later best epochs (longer runs), so point-to-point stays the default.
    injection_noise: str = "point_to_point"
    # Copies of training non-hosts with the marks of two more closed-up gaps added
    # (``plan_injected_gaps``: a level jump and a thermal ramp after each, the second a few
    # cadences to a few days after the first), which stay non-hosts. The commonest impostor after
    # the binaries: measured (docs/detector_levers.md), most of the non-hosts that ranked with the
    # hosts sat at a closed-up gap, and half of those between two.
    injected_gap_fraction: float = 0.5
    # Injected planets go only into non-hosts whose deepest dip (``preprocessing.deepest_dip``) is
    # at most this many point-to-point sigmas deep; 0: into any. A star with dips that deep of its
    # own (an eclipsing binary, most often) hides the injected transits beside them, and as a
    # host copy it teaches the network that binaries are hosts: the 1.12 default's highest-ranked
    # non-hosts were binaries with eclipses hundreds of sigmas deep (docs/detector_levers.md).
    injected_planet_max_dip: float = 50.0

    def __post_init__(self):
        # JSON (--config) gives lists; keep the config hashable and comparable.
        for name in ("injected_snr", "injected_binary_snr", "injected_binary_width", "injected_binary_secondary"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if not 0.0 < self.validation_fraction < 0.5 or not 0.0 < self.test_fraction < 0.5:
            raise ValueError("validation_fraction and test_fraction must each be between 0 and 0.5, got "
                             f"{self.validation_fraction} and {self.test_fraction}")
        if not 0 <= self.augment_copies <= 100:
            raise ValueError(f"augment_copies must be between 0 and 100, got {self.augment_copies}")
        for name in ("injected_fraction", "injected_binary_fraction", "validation_injected_fraction",
                     "validation_injected_binary_fraction", "injected_gap_fraction"):
            if not 0.0 <= getattr(self, name) <= 10.0:
                raise ValueError(f"{name} must be between 0 and 10, got {getattr(self, name)}")
        if not 0.0 <= self.injected_binary_narrow_snr < 1e9:
            raise ValueError("injected_binary_narrow_snr must be 0 (every binary draws from the whole width range) "
                             f"or a positive S/N, got {self.injected_binary_narrow_snr}")
        if not 0.0 <= self.injected_planet_max_dip < 1e9:
            raise ValueError(f"injected_planet_max_dip must be 0 (any non-host) or a positive number of sigmas, "
                             f"got {self.injected_planet_max_dip}")
        if self.injection_noise not in INJECTION_NOISES:
            raise ValueError(f"injection_noise must be one of {', '.join(INJECTION_NOISES)}, got {self.injection_noise!r}")
        for name in ("injected_snr", "injected_binary_snr"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or not 0.0 < low_high[0] <= low_high[1]:
                raise ValueError(f"{name} must be [low, high] with 0 < low <= high, got {list(low_high)}")
        # An eclipse lasts a while, at most a quarter of the orbit (clear of the secondary); a
        # secondary may be missing (0) and is at most as deep as the primary.
        width, secondary = self.injected_binary_width, self.injected_binary_secondary
        if len(width) != 2 or not 0.0 < width[0] <= width[1] <= 0.25:
            raise ValueError("injected_binary_width must be [low, high] with 0 < low <= high <= 0.25 (fractions "
                             f"of the period), got {list(width)}")
        if len(secondary) != 2 or not 0.0 <= secondary[0] <= secondary[1] <= 1.0:
            raise ValueError("injected_binary_secondary must be [low, high] with 0 <= low <= high <= 1 (fractions "
                             f"of the primary's depth), got {list(secondary)}")

    def fingerprint(self) -> dict:
        """The settings the cache and checkpoints record (``data_cache.make_fingerprint``).

        A setting added since 1.5 is left out at the value that splits as 1.5 did, so a 1.5 cache
        and checkpoint keep their fingerprint when it is set so (both validation fractions 0;
        ``injection_noise`` at its default).
        """
        return fingerprints.settings(self, _ADDED_SINCE_1_5)


# Settings added since 1.5, with the value that leaves the split as it was before them.
_ADDED_SINCE_1_5 = {"validation_injected_fraction": 0.0, "validation_injected_binary_fraction": 0.0,
                    "injection_noise": "point_to_point", "injected_gap_fraction": 0.0, "injected_planet_max_dip": 0.0,
                    "injected_binary_width": BINARY_WIDTH, "injected_binary_secondary": BINARY_SECONDARY,
                    "injected_binary_narrow_snr": 0.0}
INJECTION_NOISES = ("point_to_point", "transit_timescale")


@dataclass
class Split:
    """Curves, labels (1 = host) and original-row indices of one split."""

    flux: np.ndarray
    label: np.ndarray
    index: np.ndarray
    augmented: np.ndarray  # bool: row is a transformed copy

    def __len__(self):
        return int(self.label.size)

    def hosts(self) -> int:
        return int((self.label == 1).sum())


def stratified_split(label: np.ndarray, config: SplitConfig, seed: int) -> dict[str, np.ndarray]:
    """Indices of train/val/test rows, stratified by label and reproducible for a seed.

    Raises:
        SplitError: when a class has too few rows to appear in every split.
    """
    # Imported here: settings.py imports this module, and --status should not load scikit-learn.
    from sklearn.model_selection import train_test_split

    index = np.arange(label.size)
    holdout = config.validation_fraction + config.test_fraction
    for value, name in ((1, "planet hosts"), (0, "non-hosts")):
        count = int((label == value).sum())
        # Each split needs at least one of each class: the smallest share decides.
        needed = int(np.ceil(1.0 / min(config.validation_fraction, config.test_fraction, 1 - holdout)))
        if count < max(3, needed):
            raise SplitError(f"only {count} {name} in the data; a stratified {1 - holdout:.0%}/"
                             f"{config.validation_fraction:.0%}/{config.test_fraction:.0%} split needs at "
                             f"least {max(3, needed)}: add more labelled light curves")
    try:
        train, rest = train_test_split(index, test_size=holdout, stratify=label, random_state=seed)
        val, test = train_test_split(rest, test_size=config.test_fraction / holdout, stratify=label[rest],
                                     random_state=seed)
    except ValueError as error:
        raise SplitError(f"cannot split {label.size} curves ({error}); add more labelled light curves") from None
    for name, rows in (("train", train), ("validation", val), ("test", test)):
        if len(np.unique(label[rows])) < 2:
            raise SplitError(f"the {name} split would hold only one class; add more labelled light curves")
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


class Copies:
    """One kind of training copy, planned: which curve each copy is made from, its label, and
    every random number drawn up front but the ones ``make`` draws as it goes.

    ``make(flux)`` returns the copies of the next ``len(flux)`` rows of ``source``, given their raw
    curves: it is called in order, from the first copy to the last, in chunks of any size that
    are multiples of ``CHUNK_MULTIPLE`` (but the last), and the copies are the same bits whatever
    the chunks. So a data set of any size is augmented a chunk at a time (``data_cache.build``),
    and a small one at once (``SplitPlan.materialize``). ``skip(rows)`` passes over the next rows
    without making them, drawing the numbers ``make`` would have drawn, so that the copies after
    them are the same bits: each worker of a job makes its share of the copies that way.
    """

    CHUNK_MULTIPLE = 256

    def __init__(self, kind: str, source: np.ndarray, label: int, make: Callable[[np.ndarray, slice], np.ndarray],
                 skip: Callable[[slice], None] | None = None):
        # kind: what the copies are, for messages ("injected planets"); skip: draws what make draws, None if nothing
        self.kind, self.source, self.label, self._make, self._skip, self.done = kind, source, label, make, skip, 0

    def __len__(self) -> int:
        return int(self.source.size)

    def _next(self, rows: int) -> slice:
        part = slice(self.done, self.done + rows)
        if part.stop > len(self) or (part.stop < len(self) and rows % self.CHUNK_MULTIPLE):
            raise ValueError(f"{self.kind} are made in order, in chunks of a multiple of "
                             f"{self.CHUNK_MULTIPLE} rows: got rows {part.start}-{part.stop} of {len(self)}")
        self.done = part.stop
        return part

    def make(self, flux: np.ndarray) -> np.ndarray:
        return self._make(flux, self._next(len(flux)))

    def skip(self, rows: int) -> None:
        part = self._next(rows)
        if self._skip is not None:
            self._skip(part)


def plan_host_augmentation(source: np.ndarray, n: int, rng: np.random.Generator) -> Copies:
    """Transformed copies (module docstring) of the host curves at ``source`` (one entry per copy)."""
    shift = rng.integers(1, n, source.size)
    reverse = rng.random(source.size) < 0.5
    noisy = rng.random(source.size) < 0.5
    noise_level = rng.uniform(0.2, 0.5, source.size)

    def make(flux: np.ndarray, part: slice) -> np.ndarray:
        columns = (np.arange(n)[None, :] - shift[part, None]) % n
        columns = np.where(reverse[part, None], n - 1 - columns, columns)
        copied = np.take_along_axis(flux, columns, axis=1).astype(np.float64)
        # Drawn copy by copy in order: the same numbers as one draw for every copy at once.
        copied += (noisy[part] * noise_level[part] * point_to_point_sigma(flux))[:, None] * \
            rng.standard_normal((len(flux), n))
        return copied.astype(flux.dtype)

    def skip(part: slice) -> None:
        for start in range(part.start, part.stop, Copies.CHUNK_MULTIPLE):  # bounded memory
            rng.standard_normal((min(Copies.CHUNK_MULTIPLE, part.stop - start), n))

    return Copies("augmented hosts", source, 1, make, skip)


def augment_hosts(flux: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """``copies`` transformed copies of each row of ``flux`` (rows are planet hosts).

    Returns:
        [rows * copies, cadences] array; copy j of row i is at i * copies + j.
    """
    rows, n = flux.shape
    if rows == 0 or copies == 0:
        return np.empty((0, n), dtype=flux.dtype)
    plan = plan_host_augmentation(np.repeat(np.arange(rows), copies), n, rng)
    return plan.make(flux[plan.source])


def _add_at_snr(flux: np.ndarray, snr: np.ndarray, signal_of: Callable[[slice], tuple[np.ndarray, np.ndarray]],
                centred: bool, chunk_rows: int, noise: str, cadence_days: float) -> np.ndarray:
    """``flux`` plus each row's signal, scaled so that its total S/N in the row's own noise is
    ``snr``: the noise on the timescale of the signal's dips (``noise`` "transit_timescale",
    ``preprocessing.noise_on_timescale`` with a 1-day detrending) or its point-to-point scatter
    ("point_to_point").

    ``signal_of(rows)`` gives (signal, dip duration in days) of a slice of rows (relative flux
    change); the norm is taken around the signal's mean when ``centred``. In chunks, so float64
    temporaries stay small at any number of rows, on a thread per core (numpy releases the GIL;
    each chunk writes only its own rows, so the result does not depend on the threads).
    """
    out = np.empty_like(flux)
    # A day of cadences, odd, at most the curve's length.
    window = min(max(5, int(round(1.0 / cadence_days)) | 1), flux.shape[1] - 1 + flux.shape[1] % 2)

    def one_chunk(start: int) -> None:
        part = slice(start, start + chunk_rows)
        signal, duration = signal_of(part)
        if noise == "point_to_point":
            sigma = point_to_point_sigma(flux[part])
        else:
            sigma = noise_on_timescale(flux[part], duration / cadence_days, window)
        spread = signal - signal.mean(axis=1, keepdims=True) if centred else signal
        amplitude = snr[part] * sigma / np.maximum(np.sqrt((spread**2).sum(axis=1)), 1e-300)
        out[part] = flux[part] + amplitude[:, None] * signal

    with ThreadPoolExecutor(available_cores()) as pool:
        for _ in pool.map(one_chunk, range(0, len(flux), chunk_rows)):  # re-raises a chunk's exception here
            pass
    return out


def plan_injected_planets(source: np.ndarray, n: int, snr_range: tuple[float, float], rng: np.random.Generator,
                          cadence_days: float = CADENCE_DAYS, chunk_rows: int = 256,
                          noise: str = "point_to_point") -> Copies:
    """Copies of the curves at ``source`` with the transits of one synthetic planet added each
    (``inject_planets``); host copies."""
    rows = source.size
    time = np.broadcast_to(np.arange(n) * cadence_days, (rows, n))
    period, epoch, depth, density = draw_planets(rng, time)
    u1, u2, impact = draw_geometry(rng, rows)
    snr = log_uniform(rng, *snr_range, rows)

    def make(flux: np.ndarray, part: slice) -> np.ndarray:
        def transits(rows: slice) -> tuple[np.ndarray, np.ndarray]:
            # Measured: 1.5 ms a curve on one core.
            at = slice(part.start + rows.start, min(part.start + rows.stop, part.stop))
            loss, duration = transit_loss(time[at], period[at], epoch[at], depth[at], density[at], u1[at], u2[at],
                                          impact[at])
            return -loss, duration

        # The S/N of a transit is sqrt(sum(signal^2)) / sigma, as the built-in hosts record it
        # (``snr_white`` in white noise, ``snr`` in the noise on the transit's timescale).
        return _add_at_snr(flux, snr[part], transits, False, chunk_rows, noise, cadence_days)

    return Copies("injected planets", source, 1, make)


def inject_planets(flux: np.ndarray, snr_range: tuple[float, float], rng: np.random.Generator,
                   cadence_days: float = CADENCE_DAYS, chunk_rows: int = 256,
                   noise: str = "point_to_point") -> np.ndarray:
    """A copy of each row of ``flux`` with the transits of one synthetic planet added.

    The planet is drawn as the built-in hosts are (``synthetic_data.draw_planets``: period,
    depth, stellar density, limb darkening), and its transits are scaled to a matched-filter
    signal-to-noise ratio drawn log-uniformly from ``snr_range``, in units of the row's own
    noise (``noise``: "point_to_point", its cadence-to-cadence scatter; "transit_timescale", its
    noise on the transit's timescale, as the built-in hosts' S/N is counted, which granulation
    can make many times larger). Scaling by the row's noise rather than by a relative depth makes
    this work on any flux unit and offset (Kaggle's files remove the mean), and it puts the
    injected planets where detection is decided. Injection-recovery is how transit surveys
    measure what they can find; here it also gives the network many planets on the very stars
    it must learn to reject, so the transit is the only difference between the two.

    Args:
        flux: [rows, cadences] curves of stars without a known planet (any units).
        snr_range: (low, high) S/N of all the transits together.
        rng: random generator (seeded by the caller).
        cadence_days: time between cadences.
        chunk_rows: rows modelled at once (bounds the memory; the result does not depend on it).
        noise: what the S/N is counted in (above).

    Returns:
        [rows, cadences] array of ``flux``'s dtype.
    """
    rows, n = flux.shape
    return plan_injected_planets(np.arange(rows), n, snr_range, rng, cadence_days, chunk_rows, noise).make(flux)


def plan_injected_binaries(source: np.ndarray, n: int, snr_range: tuple[float, float], rng: np.random.Generator,
                           cadence_days: float = CADENCE_DAYS, chunk_rows: int = 256,
                           noise: str = "point_to_point", width: tuple[float, float] = BINARY_WIDTH,
                           secondary: tuple[float, float] = BINARY_SECONDARY, narrow_snr: float = 0.0) -> Copies:
    """Copies of the curves at ``source`` with one synthetic eclipsing binary added each
    (``inject_eclipsing_binaries``; ``width`` and ``secondary`` as ``draw_binaries`` takes
    them, the widths of binaries fainter than ``narrow_snr`` as ``widen_faint_eclipses`` makes
    them); non-host copies."""
    rows = source.size
    snr = log_uniform(rng, *snr_range, rows)
    time = np.arange(n) * cadence_days

    def make(flux: np.ndarray, part: slice) -> np.ndarray:
        # Drawn block by block of ``chunk_rows``, in order, before the threads add them: the same
        # binaries whatever the chunks and the threads (the plan's chunks are multiples of 256).
        def light_and_duration(start: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
            binaries = draw_binaries(rng, rows, width, secondary)
            binaries["width"] = widen_faint_eclipses(binaries["width"], snr[part][start:start + rows], width,
                                                     narrow_snr)
            light, _, _, _, _, duration, _ = binary_light(binaries, np.broadcast_to(time, (rows, n)).copy())
            return light, duration

        signals = {start: light_and_duration(start, min(chunk_rows, len(flux) - start))
                   for start in range(0, len(flux), chunk_rows)}
        # Centred: the out-of-eclipse light moves the signal's mean off zero.
        return _add_at_snr(flux, snr[part], lambda rows: signals[rows.start], True, chunk_rows, noise, cadence_days)

    def skip(part: slice) -> None:
        rows = part.stop - part.start
        for start in range(0, rows, chunk_rows):
            draw_binaries(rng, min(chunk_rows, rows - start), width, secondary)

    return Copies("injected binaries", source, 0, make, skip)


def widen_faint_eclipses(width: np.ndarray, snr: np.ndarray, width_range: tuple[float, float],
                         narrow_snr: float) -> np.ndarray:
    """The eclipse widths (fractions of the period) drawn uniformly from ``width_range``, with
    those of the binaries fainter than ``narrow_snr`` moved, in proportion, into the part of the
    range no narrower than the built-in binaries' narrowest (``BINARY_WIDTH[0]``).

    Narrow eclipses with no secondary are what a detached binary with a cool companion shows,
    and what an M dwarf's planet shows too, only far shallower in noise units: after the
    preprocessing L 98-59's transits read -8.5, EPIC 211309989's eclipses -36.6
    (docs/detector_levers.md). So only bright injected binaries are narrow. ``narrow_snr`` 0: none
    moved.

    >>> widen_faint_eclipses(np.array([0.02, 0.07, 0.12, 0.02]), np.array([10.0, 10.0, 10.0, 500.0]),
    ...                      (0.02, 0.12), 300.0).round(3).tolist()
    [0.04, 0.08, 0.12, 0.02]
    """
    low, high = width_range
    faint_low, faint_high = max(low, BINARY_WIDTH[0]), max(high, BINARY_WIDTH[0])
    share = (width - low) / (high - low) if high > low else np.zeros_like(width)
    return np.where(snr < narrow_snr, faint_low + share * (faint_high - faint_low), width)


def inject_eclipsing_binaries(flux: np.ndarray, snr_range: tuple[float, float], rng: np.random.Generator,
                              cadence_days: float = CADENCE_DAYS, chunk_rows: int = 256,
                              noise: str = "point_to_point") -> np.ndarray:
    """A copy of each row of ``flux`` with the light of one synthetic eclipsing binary added.

    The negative counterpart of ``inject_planets`` (same arguments): the binary is drawn as the
    built-in ones are (``synthetic_data.eclipsing_binary``: V- to U-shaped primary and secondary
    eclipses, ellipsoidal and reflection light, a third of them diluted), scaled to a total S/N
    drawn log-uniformly from ``snr_range`` in the row's own noise, counted as the planets' is
    (``noise``; on the timescale of the eclipses). In noise units a binary's eclipses look like
    a deep planet's transits; these copies, labelled non-hosts, show the network the difference
    on the same stars.
    """
    rows, n = flux.shape
    return plan_injected_binaries(np.arange(rows), n, snr_range, rng, cadence_days, chunk_rows, noise).make(flux)


# The marks of a closed-up gap, in units of the curve's point-to-point scatter (log-uniform, either
# sign): a level jump (a new aperture after a downlink) and an exponential thermal ramp; the
# second gap's distance from the first, in cadences (log-uniform); the ramp's time scale in days.
GAP_JUMP_SIGMA = (2.0, 50.0)
GAP_RAMP_SIGMA = (1.0, 50.0)
GAP_SEPARATION_CADENCES = (3.0, 300.0)
GAP_RAMP_DAYS = (0.3, 2.0)


def plan_injected_gaps(source: np.ndarray, n: int, rng: np.random.Generator,
                       cadence_days: float = CADENCE_DAYS) -> Copies:
    """Copies of the curves at ``source`` with the marks of two more closed-up gaps added each;
    non-host copies.

    A Kaggle-layout row closes up its gaps: after each, the star comes back at another level and
    the instrument settles (``synthetic_data``'s instrument model, after Kepler's). Where two
    gaps lie close together, the stretch between them is a box as sharp as a single transit; one
    gap alone leaves a one-sided dip once a trend is fitted across its jump. Each copy gets two
    gaps, the second ``GAP_SEPARATION_CADENCES`` after the first, each a jump and a ramp of
    independent signs and sizes in units of the row's own point-to-point scatter (any flux unit),
    so the network sees thousands of these on the very stars it must not flag.
    """
    rows = source.size
    separation = np.minimum(np.round(log_uniform(rng, *GAP_SEPARATION_CADENCES, rows)).astype(np.int64), n // 2)
    first = rng.integers(0, n - separation)
    start = np.stack([first, first + separation], axis=1)
    jump = rng.choice([-1.0, 1.0], (rows, 2)) * log_uniform(rng, *GAP_JUMP_SIGMA, (rows, 2))
    ramp = rng.choice([-1.0, 1.0], (rows, 2)) * log_uniform(rng, *GAP_RAMP_SIGMA, (rows, 2))
    tau = rng.uniform(*GAP_RAMP_DAYS, (rows, 2)) / cadence_days

    def make(flux: np.ndarray, part: slice) -> np.ndarray:
        out = np.empty_like(flux)
        for block in range(0, len(flux), Copies.CHUNK_MULTIPLE):  # float64 temporaries stay small
            these = slice(block, block + Copies.CHUNK_MULTIPLE)
            at = np.arange(part.start, part.stop)[these]  # their places in the plan
            marks = np.zeros((at.size, n))
            for gap in range(2):
                since = np.arange(n)[None, :] - start[at, gap, None]
                marks += np.where(since >= 0, jump[at, gap, None] + ramp[at, gap, None] *
                                  np.exp(-np.maximum(since, 0) / tau[at, gap, None]), 0.0)
            out[these] = flux[these] + point_to_point_sigma(flux[these])[:, None] * marks
        return out

    return Copies("injected gaps", source, 0, make)


def split_by_star(label: np.ndarray, star: np.ndarray | None, config: SplitConfig, seed: int) -> dict[str, np.ndarray]:
    """``stratified_split`` of the stars, then every row (window) goes where its star went.

    A star's windows (two quarters of one star, the windows of a long curve) never fall into
    two splits; a star counts as a host if any of its windows is labelled one. With one row per
    star (the Kaggle layout; ``star`` None) this is ``stratified_split`` of the rows, row for row.
    """
    stars, position = np.unique(np.arange(label.size) if star is None else star, return_inverse=True)
    star_label = np.zeros(stars.size, dtype=label.dtype)
    np.maximum.at(star_label, position, label)
    by_star = stratified_split(star_label, config, seed)
    return {name: np.flatnonzero(np.isin(position, rows)) for name, rows in by_star.items()}


@dataclass
class SplitPlan:
    """The split and its copies, planned from the labels alone; no curve is read yet.

    ``rows``: the loaded rows of each split's curves; ``copies``: the kinds of training copy, in
    the order they follow the training curves. The training split is its curves, then the
    augmented hosts, the injected planets, the injected binaries and the injected gaps; the
    validation split is its curves, then its ``val_copies`` (injected planets and binaries); the
    test split is its curves.
    """

    rows: dict[str, np.ndarray]
    label: np.ndarray              # of every loaded row
    copies: list[Copies]
    val_copies: list[Copies] = dataclasses.field(default_factory=list)
    deep_dip_non_hosts: int = 0    # training and validation non-hosts too deep-dipped for injected planets

    def copies_of(self, name: str) -> list[Copies]:
        """The kinds of copy that follow split ``name``'s own curves, in order."""
        return {"train": self.copies, "val": self.val_copies}.get(name, [])

    def split(self, name: str) -> Split:
        """The split without its curves (``flux`` None): labels, original rows, which are copies."""
        rows = self.rows[name]
        copies = self.copies_of(name)
        return Split(flux=None,
                     label=np.concatenate([self.label[rows]] + [np.full(len(c), c.label, self.label.dtype)
                                                                for c in copies]),
                     index=np.concatenate([rows] + [c.source for c in copies]).astype(np.int64),
                     augmented=np.concatenate([np.zeros(rows.size, bool)] + [np.ones(len(c), bool) for c in copies]))

    def materialize(self, flux: np.ndarray) -> dict[str, Split]:
        """Every split with its curves, in memory (small data sets and tests; ``data_cache.build``
        streams instead). Makes the copies: call once."""
        splits = {}
        for name in SPLITS:
            split = self.split(name)
            parts = [flux[self.rows[name]]] + [c.make(flux[c.source]) for c in self.copies_of(name)]
            split.flux = np.concatenate(parts) if len(parts) > 1 else parts[0]
            splits[name] = split
        return splits


def plan_split(label: np.ndarray, star: np.ndarray | None, config: SplitConfig, seed: int, cadences: int,
               deepest_dips: Callable[[np.ndarray], np.ndarray] | None = None) -> SplitPlan:
    """Stratified split of the stars (``split_by_star``), then the copies: of the training split,
    augmented hosts, injected planets (hosts), injected eclipsing binaries and injected gaps
    (non-hosts); of the validation split, injected planets and binaries. The test split is never
    copied.

    ``cadences``: the curves' length. Every random number but those drawn curve by curve is
    drawn here, each kind of copy from its own generator seeded by ``seed``. ``deepest_dips``
    gives the deepest dip of the loaded rows it is given (``preprocessing.deepest_dip`` of their
    curves); it is called once, for the non-hosts of the training and validation splits, where
    ``config.injected_planet_max_dip`` is set, and planets are injected only into those whose dip
    is no deeper (as many planets as without the limit: each such curve gets more of them).

    Raises:
        ValueError: if ``injected_planet_max_dip`` is set without ``deepest_dips``.
    """
    rows = split_by_star(label, star, config, seed)
    train = rows["train"]
    hosts = train[label[train] == 1]
    copies = [plan_host_augmentation(np.repeat(hosts, config.augment_copies), cadences,
                                     np.random.default_rng([seed, 3]))]
    recipients = _planet_recipients(rows, label, config.injected_planet_max_dip, deepest_dips)
    planets = partial(plan_injected_planets, snr_range=config.injected_snr, noise=config.injection_noise)
    binaries = partial(plan_injected_binaries, snr_range=config.injected_binary_snr, noise=config.injection_noise,
                       width=config.injected_binary_width, secondary=config.injected_binary_secondary,
                       narrow_snr=config.injected_binary_narrow_snr)
    copies += _injections(rows["train"], label, cadences, seed, (
        (config.injected_fraction, planets, 6, recipients), (config.injected_binary_fraction, binaries, 7, None),
        (config.injected_gap_fraction, plan_injected_gaps, 10, None)))  # gaps are sized in sigmas, not by an S/N
    val_copies = _injections(rows["val"], label, cadences, seed, (
        (config.validation_injected_fraction, planets, 8, recipients),
        (config.validation_injected_binary_fraction, binaries, 9, None)))
    excluded = 0 if recipients is None else int(sum((label[r] == 0).sum() for r in (rows["train"], rows["val"]))
                                                - recipients.size)
    return SplitPlan(rows=rows, label=label, copies=[c for c in copies if len(c)], val_copies=val_copies,
                     deep_dip_non_hosts=excluded)


def _planet_recipients(rows: dict[str, np.ndarray], label: np.ndarray, max_dip: float,
                       deepest_dips: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray | None:
    """The training and validation non-hosts whose deepest dip is at most ``max_dip`` sigmas
    (sorted loaded rows), or None where there is no limit."""
    if not max_dip:
        return None
    if deepest_dips is None:
        raise ValueError("split.injected_planet_max_dip is set: plan_split needs the curves' deepest dips")
    candidates = np.sort(np.concatenate([r[label[r] == 0] for r in (rows["train"], rows["val"])]))
    return candidates[np.asarray(deepest_dips(candidates)) <= max_dip]


def _injections(rows: np.ndarray, label: np.ndarray, cadences: int, seed: int, kinds) -> list[Copies]:
    """Injected copies of the non-hosts among ``rows``: for each (copies per non-host, planner,
    random stream, allowed curves or None for any) of ``kinds``, as many curves as the fraction of
    the non-hosts, drawn among the allowed ones (without replacement up to one copy each) and
    planned (``planner(curves, cadences, rng=rng)``) from a generator of its own."""
    non_hosts = rows[label[rows] == 0]
    copies = []
    for fraction, plan, stream, allowed in kinds:
        count = int(round(fraction * non_hosts.size))
        pool = non_hosts if allowed is None else non_hosts[np.isin(non_hosts, allowed)]
        if count and pool.size:
            rng = np.random.default_rng([seed, stream])
            chosen = np.sort(rng.choice(pool, count, replace=count > pool.size))
            copies.append(plan(chosen, cadences, rng=rng))
    return copies


def split_and_augment(flux: np.ndarray, label: np.ndarray, config: SplitConfig, seed: int,
                      star: np.ndarray | None = None, preprocessing=None) -> dict[str, Split]:
    """``plan_split`` made in memory: every split with its curves (small data sets and tests).
    ``preprocessing`` (a ``PreprocessingConfig``; the defaults when None) sets the trend fit of the
    deepest dips."""
    return plan_split(label, star, config, seed, flux.shape[1],
                      deepest_dips_of(flux, preprocessing)).materialize(flux)


def deepest_dips_of(flux, preprocessing=None, chunk_rows: int = 2048) -> Callable[[np.ndarray], np.ndarray]:
    """``plan_split``'s ``deepest_dips`` for curves ``flux`` ([rows, cadences]; an array or a
    ``row_store`` file): the rows it is given read ``chunk_rows`` at a time, so memory stays
    bounded; a line every ``PROGRESS_SECONDS`` in the log (about 1000 curves a second)."""
    config = preprocessing or PreprocessingConfig()

    def dips(rows: np.ndarray) -> np.ndarray:
        depth = np.empty(rows.size)
        started = last_report = time.perf_counter()
        for start in range(0, rows.size, chunk_rows):
            depth[start:start + chunk_rows] = deepest_dip(flux.take(rows[start:start + chunk_rows], axis=0), config)
            if time.perf_counter() - last_report > PROGRESS_SECONDS:
                last_report = time.perf_counter()
                log.info("  measured the deepest dips of %d of %d non-hosts, %.0f s",
                         min(start + chunk_rows, rows.size), rows.size, last_report - started)
        return depth

    return dips

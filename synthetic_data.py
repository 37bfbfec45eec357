"""Built-in synthetic Kepler-like light curves, generated from the physics of each effect.

Used when the data folder holds no CSV of the user's own, so that a first run trains on
something that looks like Kepler long-cadence photometry and exercises the whole pipeline: the
curves are written as CSV in the Kaggle "Exoplanet Hunting in Deep Space" layout (``LABEL``:
2 = planet host, 1 = not; ``FLUX.1 ... FLUX.3197`` in e-/s with the mean removed, two decimals).
Every curve is drawn from a seeded generator, so the data set is the same for the same seed.

Time sampling
    3197 cadences of 29.4244 min (Kepler long cadence), about 65 days. One to three data gaps
    (0.5-4 d each, as at monthly downlinks) are closed up: the cadences run on, but the star's
    phase and every periodic signal jump across the gap, and the instrument changes (below).
    Each cadence integrates 29.4 min: transits and eclipses are averaged over 5 sub-exposures,
    pulsations are attenuated by sinc(pi * cadence / period).

Noise and stellar variability (every curve)
    White noise: sigma 20-3000 ppm per cadence, log-uniform (bright to faint stars); the flux
      level follows from photon noise, F = 1 / (sigma^2 * 1765.5 s) e-/s.
    Granulation: red noise with a Lorentzian (Harvey) spectrum, time scale 0.05-0.5 d,
      rms 10-150 ppm, log-uniform.
    Spot modulation: quasi-periodic, two harmonics of the rotation period (1-40 d, log-uniform)
      whose amplitudes and phases wander on the spot lifetime (1-4 rotations); amplitude
      0.01 %-3 %, log-uniform.

Instrument (every curve)
    Slow trend: a quadratic drift of up to about 0.3 %.
    Thermal ramp after the start and after each gap: exponential, 0.01-0.3 %, time scale 0.3-2 d.
    Jumps: a flux step of about 0.1 % at each gap (new aperture after a downlink).
    Cosmic rays: on average two single-cadence upward outliers of 3-30 sigma.

Planet hosts (LABEL 2; ``positive_fraction`` of the rows, default 4 %, like a survey's few percent)
    Transits of a planet on a circular orbit, limb-darkened (quadratic law, u1 0.3-0.5,
    u2 0.1-0.3) with the small-planet approximation (local intensity times the exact overlap
    area of two disks). Stellar density 0.1-3 solar (log-uniform) fixes a/R* through Kepler's
    third law, so the duration follows from the period, the impact parameter (0-0.9) and the
    radius ratio. Depth 100 ppm-2 % (log-uniform). Period 0.5-30 d (log-uniform) for 88 % of
    hosts, so two or more transits fall in the window; 12 % are long-period planets (35-300 d)
    with a single transit. The white noise is capped so the transit signal-to-noise ratio is at
    least 7-12 in white noise: some hosts sit near the detection floor. Hosts carry every kind
    of stellar variability above, and 10 % also flare or pulsate, so granulation can bury a
    transit that the white noise alone would show: the S/N recorded (``snr``) is the one a
    survey quotes, against the noise on the transit's timescale (``noise_on_timescale``:
    the curve without its transits, detrended over a day, averaged over a transit duration;
    Kepler's CDPP); ``snr_white`` keeps the white-noise one. On 5000 curves of seed 2026, 122
    of the 200 hosts have ``snr`` >= 12 (147 by ``snr_white``); the oracle matched filter
    (``bench/quality.py``) measures S/N >= 7.1 on 98 % of them (93 % of the 147), and its S/N
    follows ``snr`` more closely (log-correlation 0.86 against 0.80).

Hard negatives (LABEL 1; 45 % of the non-hosts, the rest are quiet or spotted stars)
    Eclipsing binaries (12 %): period 0.3-30 d, V-shaped primary eclipses of 3-50 % (30 % of
      them diluted by a blended star to 0.3-3 %), duration 4-12 % of the period, a secondary
      eclipse at phase 0.5 of 5-90 % of the primary depth, ellipsoidal (cos 2 phi, up to 1 %)
      and reflection (cos phi) modulation out of eclipse.
    Sudden pixel sensitivity dropouts (8 %): one or two drops of 0.05-1 % in one cadence,
      recovering exponentially over 0.3-3 d.
    Thruster-firing sawtooth (5 %): K2-like, period about 6 h, 0.03-0.5 %, over the whole curve.
    Flares (8 %): 1-8 flares of 0.1-5 %, one-cadence rise, exponential decay of 0.5-3.6 h.
    Short-period pulsators (7 %): delta Scuti-like, 2-5 modes of 0.02-0.25 d and 0.01-0.5 %
      each, attenuated by the cadence.
    Fast rotators (5 %): spot modulation of 0.15-1 d period and 0.3-3 %.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from preprocessing import noise_on_timescale

CADENCE_DAYS = 29.4244 / 1440.0
EXPOSURE_SECONDS = 1765.5
N_CADENCES = 3197
GAP_SKIP_DAYS = (0.5, 4.0)   # time a closed-up gap skips (a downlink); a search over the cadences knows no more
# A binary's eclipse duration as a fraction of the period, and its secondary eclipse's depth as a
# fraction of the primary's (``draw_binaries``; uniform in these ranges).
BINARY_WIDTH = (0.04, 0.12)
BINARY_SECONDARY = (0.05, 0.9)
SUBEXPOSURES = 5
HARD_NEGATIVE_KINDS = {  # share of all non-hosts
    "eclipsing_binary": 0.12,
    "sensitivity_dropout": 0.08,
    "thruster_sawtooth": 0.05,
    "flares": 0.08,
    "pulsator": 0.07,
    "fast_rotator": 0.05,
}


@dataclass(frozen=True)
class SyntheticConfig:
    """Size of the built-in data set written when the data folder holds no CSV."""

    # 15000 since 1.15 (5000 before): three times the stars, hosts and injections for about the
    # cost an epoch, each epoch reading a third (``TrainingConfig.epoch_parts``;
    # docs/detector_levers.md).
    rows: int = 15000
    positive_fraction: float = 0.04
    files: int = 1
    completeness_rows: int = 2000  # fresh curves (a quarter hosts) for stage 7's injection-recovery; 0: none

    def __post_init__(self):
        if self.rows < 40:
            raise ValueError(f"rows must be at least 40, got {self.rows}")
        if not 0.0 < self.positive_fraction < 0.5:
            raise ValueError(f"positive_fraction must be between 0 and 0.5, got {self.positive_fraction}")
        if not 1 <= self.files <= self.rows:
            raise ValueError(f"files must be between 1 and rows, got {self.files}")
        if self.completeness_rows != 0 and self.completeness_rows < 40:
            raise ValueError(f"completeness_rows must be 0 (none) or at least 40, got {self.completeness_rows}")


@dataclass
class SyntheticCurves:
    """Generated curves and what went into them (for tests and inspection)."""

    flux: np.ndarray          # [rows, cadences] e-/s, mean removed
    label: np.ndarray         # [rows] 2 = planet host, 1 = not
    kind: np.ndarray          # [rows] str: "planet", "quiet", a hard-negative kind, or "diluted_eclipsing_binary"
    period: np.ndarray        # [rows] days, planet or binary period (NaN otherwise)
    depth: np.ndarray         # [rows] relative transit depth at centre, before dilution by noise
    epoch: np.ndarray         # [rows] days, time of one mid-transit / primary eclipse
    n_transits: np.ndarray    # [rows] transits (or primary eclipses) inside the observed window
    time: np.ndarray          # [rows, cadences] days, with the gaps' time skipped
    duration: np.ndarray      # [rows] days, transit (first to fourth contact) or eclipse (NaN otherwise)
    snr: np.ndarray           # [rows] planets: sqrt(sum(transit signal^2)) / noise on the transit's timescale (NaN otherwise)
    snr_white: np.ndarray     # [rows] planets: the same against the white noise alone (NaN otherwise)
    white_noise: np.ndarray   # [rows] relative white noise per cadence
    spot_amplitude: np.ndarray  # [rows] relative amplitude of the rotational spot modulation


def log_uniform(rng, low, high, size):
    """``size`` values whose logarithm is uniform between log(low) and log(high)."""
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _coloured_noise(rng, rows, n, timescale_cadences, gaussian=False):
    """Unit-rms noise with a Lorentzian (or Gaussian, for smooth wandering) spectrum per row."""
    white = rng.standard_normal((rows, n))
    freq = np.fft.rfftfreq(n)[None, :]  # cycles per cadence
    tau = np.asarray(timescale_cadences, dtype=np.float64)[:, None]
    if gaussian:
        response = np.exp(-0.5 * (2 * np.pi * freq * tau) ** 2)
    else:
        response = 1.0 / np.sqrt(1.0 + (2 * np.pi * freq * tau) ** 2)
    shaped = np.fft.irfft(np.fft.rfft(white, axis=1) * response, n=n, axis=1)
    shaped -= shaped.mean(axis=1, keepdims=True)
    return shaped / np.maximum(shaped.std(axis=1, keepdims=True), 1e-12)


def _limb_darkened_transit(z, k, u1, u2):
    """Fractional flux loss of a star of radius 1 behind a planet of radius k at distance z.

    Small-planet approximation: exact overlap area of the two disks times the quadratic-law
    intensity at the planet's position, normalised by the star's mean intensity.
    """
    z = np.abs(z)
    k = np.broadcast_to(k, z.shape)
    area = np.zeros_like(z)
    inside = z <= 1.0 - k
    area[inside] = np.pi * k[inside] ** 2
    edge = (z > 1.0 - k) & (z < 1.0 + k)
    ze, ke = z[edge], k[edge]
    kappa0 = np.arccos(np.clip((ke**2 + ze**2 - 1.0) / (2.0 * ke * ze), -1.0, 1.0))
    kappa1 = np.arccos(np.clip((1.0 - ke**2 + ze**2) / (2.0 * ze), -1.0, 1.0))
    root = np.sqrt(np.clip(4.0 * ze**2 - (1.0 + ze**2 - ke**2) ** 2, 0.0, None))
    area[edge] = ke**2 * kappa0 + kappa1 - 0.5 * root
    r = np.clip(np.where(edge, (1.0 + z - k) / 2.0, z), 0.0, 1.0)
    mu = np.sqrt(1.0 - r**2)
    intensity = 1.0 - u1 * (1.0 - mu) - u2 * (1.0 - mu) ** 2
    mean_intensity = 1.0 - u1 / 3.0 - u2 / 6.0
    return area / np.pi * intensity / mean_intensity


def _exposure_average(function, time):
    """Average ``function(time)`` over the 29.4-minute exposure of each cadence."""
    offsets = (np.arange(SUBEXPOSURES) + 0.5) / SUBEXPOSURES - 0.5
    return sum(function(time + offset * CADENCE_DAYS) for offset in offsets) / SUBEXPOSURES


def draw_geometry(rng, rows: int):
    """Quadratic limb-darkening coefficients u1 (0.3-0.5), u2 (0.1-0.3) and impact parameter (0-0.9)."""
    u1 = rng.uniform(0.3, 0.5, rows)
    u2 = rng.uniform(0.1, 0.3, rows)
    impact = rng.uniform(0.0, 0.9, rows)
    return u1, u2, impact


def transit_signal(rng, time, period, epoch, depth, density):
    """Limb-darkened transits; returns (relative flux loss [rows, n], duration in days [rows])."""
    return transit_loss(time, period, epoch, depth, density, *draw_geometry(rng, time.shape[0]))


def transit_loss(time, period, epoch, depth, density, u1, u2, impact):
    """``transit_signal`` for given limb darkening and impact parameters ([rows] each)."""
    u1, u2 = u1[:, None], u2[:, None]
    a_over_r = 4.2066 * period ** (2.0 / 3.0) * density ** (1.0 / 3.0)  # Kepler's third law
    mu_b = np.sqrt(1.0 - impact**2)
    centre_intensity = (1.0 - u1[:, 0] * (1.0 - mu_b) - u2[:, 0] * (1.0 - mu_b) ** 2)
    k = np.sqrt(depth * (1.0 - u1[:, 0] / 3.0 - u2[:, 0] / 6.0) / centre_intensity)
    cos_i = impact / a_over_r
    sin_i = np.sqrt(1.0 - cos_i**2)
    duration = period / np.pi * np.arcsin(np.clip(np.sqrt((1.0 + k) ** 2 - impact**2) / (a_over_r * sin_i), 0, 1))

    def loss(t):
        phase = 2.0 * np.pi * (t - epoch[:, None]) / period[:, None]
        x = a_over_r[:, None] * np.sin(phase)
        cos_phase = np.cos(phase)
        y = a_over_r[:, None] * cos_i[:, None] * cos_phase
        z = np.sqrt(x**2 + y**2)
        # The disks overlap at a few percent of the cadences; elsewhere the loss is exactly 0,
        # so only those are modelled (element by element the same arithmetic: the same bits).
        transiting = (cos_phase > 0.0) & (z < 1.0 + k[:, None])
        out = np.zeros(z.shape)
        rows = np.nonzero(transiting)[0]
        out[transiting] = _limb_darkened_transit(z[transiting], k[rows], u1[rows, 0], u2[rows, 0])
        return out

    return _exposure_average(loss, time), duration


def draw_binaries(rng, rows: int, width: tuple[float, float] = BINARY_WIDTH,
                  secondary: tuple[float, float] = BINARY_SECONDARY) -> dict:
    """The random parameters of ``rows`` eclipsing binaries (``binary_light``), drawn in a fixed order.

    Drawing is separate from modelling so that a caller can draw a block's numbers without
    modelling its light (``augmentation``: a worker making its share of the copies keeps the
    generator in step with the others). ``width`` (the eclipse's duration as a fraction of the
    period) and ``secondary`` (the secondary eclipse's depth as a fraction of the primary's) are
    drawn uniformly from these ranges; other ranges draw as many numbers, so the rest stay the same.
    """
    period = log_uniform(rng, 0.3, 30.0, rows)
    epoch = rng.uniform(0.0, 1.0, rows) * period
    diluted = rng.random(rows) < 0.3
    depth = np.where(diluted, log_uniform(rng, 0.003, 0.03, rows), log_uniform(rng, 0.03, 0.5, rows))
    width = rng.uniform(*width, rows)   # eclipse duration as a fraction of the period
    flat = rng.uniform(0.0, 0.3, rows)  # fraction of the eclipse at full depth: V to short U
    secondary = rng.uniform(*secondary, rows)
    offset = rng.uniform(-0.02, 0.02, rows)  # e cos(omega) shifts the secondary eclipse
    ellipsoidal = log_uniform(rng, 1e-4, 1e-2, rows) * np.where(diluted, 0.1, 1.0)
    reflection = ellipsoidal * rng.uniform(0.0, 0.3, rows)
    return dict(period=period, epoch=epoch, diluted=diluted, depth=depth, width=width, flat=flat,
                secondary=secondary, offset=offset, ellipsoidal=ellipsoidal, reflection=reflection)


def binary_light(binaries: dict, time):
    """Eclipses, ellipsoidal and reflection light of the binaries of ``draw_binaries`` at ``time``
    [rows, cadences] (days); returns as ``eclipsing_binary``."""
    period, epoch, depth, width, flat = (binaries[k] for k in ("period", "epoch", "depth", "width", "flat"))
    secondary, offset = binaries["secondary"], binaries["offset"]

    def eclipses(t):
        phase = ((t - epoch[:, None]) / period[:, None]) % 1.0
        half = width[:, None] / 2.0

        def v_shape(distance):
            return np.clip((1.0 - distance / half) / (1.0 - flat[:, None]), 0.0, 1.0)

        primary = v_shape(np.minimum(phase, 1.0 - phase))
        secondary_shape = v_shape(np.abs(phase - 0.5 - offset[:, None]))
        return depth[:, None] * (primary + secondary[:, None] * secondary_shape)

    phase = 2.0 * np.pi * (time - epoch[:, None]) / period[:, None]
    out_of_eclipse = -binaries["ellipsoidal"][:, None] * np.cos(2.0 * phase) - binaries["reflection"][:, None] * np.cos(phase)
    first = epoch + np.ceil((time[:, 0] - epoch) / period) * period
    n_eclipses = np.maximum(0, np.floor((time[:, -1] - first) / period) + 1).astype(int)
    return (-_exposure_average(eclipses, time) + out_of_eclipse, period, depth, epoch, n_eclipses, width * period,
            binaries["diluted"])


def eclipsing_binary(rng, time):
    """Eclipses, ellipsoidal and reflection light of one binary per row of ``time`` [rows, cadences] (days).

    Returns (relative flux change, period, primary depth, epoch, eclipses in the window, eclipse
    duration, diluted): 30 % are diluted by a third star (depth 0.3-3 %), the rest 3-50 % deep.
    """
    return binary_light(draw_binaries(rng, time.shape[0]), time)


def _sensitivity_dropout(rng, time):
    rows, n = time.shape
    signal = np.zeros((rows, n))
    for _ in range(2):
        active = rng.random(rows) < 0.7
        start = time[np.arange(rows), rng.integers(50, n - 50, rows)]
        depth = log_uniform(rng, 5e-4, 1e-2, rows) * active
        recovery = rng.uniform(0.3, 3.0, rows)
        after = time >= start[:, None]
        signal -= np.where(after, depth[:, None] * np.exp(-(time - start[:, None]) / recovery[:, None]), 0.0)
    return signal


def _thruster_sawtooth(rng, time):
    rows = time.shape[0]
    period = rng.uniform(0.23, 0.26, rows)
    amplitude = log_uniform(rng, 3e-4, 5e-3, rows)
    return amplitude[:, None] * (((time + rng.uniform(0, 1, rows)[:, None]) / period[:, None]) % 1.0 - 0.5)


def _flares(rng, time, max_flares=8):
    rows, n = time.shape
    signal = np.zeros((rows, n))
    count = rng.integers(1, max_flares + 1, rows)
    for index in range(max_flares):
        active = index < count
        start = time[np.arange(rows), rng.integers(0, n, rows)]
        amplitude = log_uniform(rng, 1e-3, 5e-2, rows) * active
        decay = log_uniform(rng, 0.02, 0.15, rows)
        since = time - start[:, None]
        rise = (since > -CADENCE_DAYS) & (since < 0)
        signal += np.where(since >= 0, amplitude[:, None] * np.exp(-np.clip(since, 0, None) / decay[:, None]),
                           np.where(rise, 0.5 * amplitude[:, None], 0.0))
    return signal


def _pulsations(rng, time, max_modes=5):
    rows = time.shape[0]
    signal = np.zeros_like(time)
    modes = rng.integers(2, max_modes + 1, rows)
    for index in range(max_modes):
        period = log_uniform(rng, 0.02, 0.25, rows)
        amplitude = log_uniform(rng, 1e-4, 5e-3, rows) * (index < modes)
        amplitude *= np.abs(np.sinc(CADENCE_DAYS / period))  # averaged over the exposure
        signal += amplitude[:, None] * np.sin(2 * np.pi * time / period[:, None] + rng.uniform(0, 2 * np.pi, rows)[:, None])
    return signal


def _spots(rng, time, period, amplitude):
    """Quasi-periodic rotational modulation with spot evolution."""
    rows, n = time.shape
    lifetime = np.clip(rng.uniform(1.0, 4.0, rows) * period, 0.5, 60.0) / CADENCE_DAYS
    wander_amp = 0.3 * _coloured_noise(rng, rows, n, lifetime, gaussian=True)
    wander_phase = 0.5 * _coloured_noise(rng, rows, n, lifetime, gaussian=True)
    phase = 2 * np.pi * time / period[:, None] + rng.uniform(0, 2 * np.pi, rows)[:, None] + wander_phase
    second = rng.uniform(0.1, 0.6, rows)[:, None]
    shape = np.sin(phase) + second * np.sin(2 * phase + rng.uniform(0, 2 * np.pi, rows)[:, None])
    return amplitude[:, None] * (1.0 + wander_amp) * shape / (1.0 + second)


def _gapped_time(rng, rows, n):
    """Cadence times in days with 1-3 closed-up gaps; returns (time, gap start cadences, -1 = none)."""
    time = np.tile(np.arange(n) * CADENCE_DAYS, (rows, 1))
    n_gaps = rng.integers(1, 4, rows)
    gap_starts = []
    for index in range(3):
        position = rng.integers(200, n - 200, rows)
        length = rng.uniform(*GAP_SKIP_DAYS, rows) * (index < n_gaps)
        later = np.arange(n)[None, :] >= position[:, None]
        time += later * length[:, None]
        gap_starts.append(np.where(index < n_gaps, position, -1))
    return time, np.stack(gap_starts, axis=1)


def _instrument(rng, time, gap_starts):
    rows, n = time.shape
    x = (time - time[:, :1]) / (time[:, -1:] - time[:, :1]) - 0.5
    trend = rng.normal(0, 1e-3, rows)[:, None] * x + rng.normal(0, 1e-3, rows)[:, None] * x**2
    segment_start = np.zeros(rows, dtype=int)
    starts = [segment_start] + [gap_starts[:, i] for i in range(gap_starts.shape[1])]
    index = np.arange(n)[None, :]
    for start in starts:
        valid = start >= 0
        t_start = time[np.arange(rows), np.clip(start, 0, n - 1)]
        since = time - t_start[:, None]
        after = (index >= start[:, None]) & valid[:, None]
        ramp = rng.choice([-1.0, 1.0], rows) * log_uniform(rng, 1e-4, 3e-3, rows)
        tau = rng.uniform(0.3, 2.0, rows)
        trend += np.where(after, ramp[:, None] * np.exp(-since / tau[:, None]), 0.0)
        jump = rng.normal(0, 1e-3, rows) * (start > 0)
        trend += np.where(after, jump[:, None], 0.0)
    return trend


def generate_light_curves(rows: int, seed: int, positive_fraction: float = 0.04,
                          n_cadences: int = N_CADENCES, chunk_rows: int = 1000) -> SyntheticCurves:
    """Generate ``rows`` curves; the same (rows, seed, positive_fraction) gives the same curves.

    Rows are generated in chunks of ``chunk_rows`` (bounded memory), each from its own seeded
    stream, and then shuffled together so hosts are spread through the file.
    """
    parts = []
    n_positive = int(round(rows * positive_fraction))
    labels = np.array([2] * n_positive + [1] * (rows - n_positive))
    order = np.random.default_rng([seed, 0]).permutation(rows)
    labels = labels[order]
    for chunk, start in enumerate(range(0, rows, chunk_rows)):
        rng = np.random.default_rng([seed, 1, chunk])
        parts.append(_generate_chunk(rng, labels[start:start + chunk_rows], n_cadences))
    return SyntheticCurves(**{name: np.concatenate([getattr(p, name) for p in parts])
                              for name in SyntheticCurves.__dataclass_fields__})


def draw_planets(rng, time):
    """Period, mid-transit time, depth and stellar density of one planet per row of ``time``.

    Periods are log-uniform in 0.5-30 d (88 %) or 35-300 d (12 %, a single transit in a Kepler
    quarter); depth log-uniform in 100 ppm-2 %; stellar density log-uniform in 0.1-3 solar. The
    reference mid-transit falls on a cadence away from the edges, so no transit is lost in a
    gap: long-period planets show just this one, the others show it and their siblings.

    Returns:
        (period days, epoch days, depth, density), each [rows].
    """
    count, n = time.shape
    long_period = rng.random(count) < 0.12
    period = np.where(long_period, log_uniform(rng, 35.0, 300.0, count), log_uniform(rng, 0.5, 30.0, count))
    epoch = time[np.arange(count), rng.integers(n // 10, n - n // 10, count)]
    depth = log_uniform(rng, 1e-4, 2e-2, count)
    density = log_uniform(rng, 0.1, 3.0, count)
    return period, epoch, depth, density


def _generate_chunk(rng, labels, n):
    rows = labels.shape[0]
    host = labels == 2
    kinds = np.array(["quiet"] + list(HARD_NEGATIVE_KINDS))
    probabilities = np.array([1.0 - sum(HARD_NEGATIVE_KINDS.values())] + list(HARD_NEGATIVE_KINDS.values()))
    kind = np.where(host, "planet", kinds[rng.choice(len(kinds), rows, p=probabilities)]).astype("<U32")

    time, gap_starts = _gapped_time(rng, rows, n)
    white_sigma = log_uniform(rng, 20e-6, 3000e-6, rows)
    relative = np.zeros((rows, n))
    period = np.full(rows, np.nan)
    depth = np.full(rows, np.nan)
    epoch = np.full(rows, np.nan)
    n_transits = np.zeros(rows, dtype=int)
    duration = np.full(rows, np.nan)
    snr = np.full(rows, np.nan)
    snr_white = np.full(rows, np.nan)

    # Stellar variability: every star.
    rotation = log_uniform(rng, 1.0, 40.0, rows)
    spot_amplitude = log_uniform(rng, 1e-4, 3e-2, rows)
    relative += _spots(rng, time, rotation, spot_amplitude)
    granulation = log_uniform(rng, 10e-6, 150e-6, rows)
    relative += granulation[:, None] * _coloured_noise(rng, rows, n, log_uniform(rng, 0.05, 0.5, rows) / CADENCE_DAYS)
    relative += _instrument(rng, time, gap_starts)

    if host.any():
        h = np.flatnonzero(host)
        count = h.size
        p, t0, d, density = draw_planets(rng, time[h])
        loss, duration[h] = transit_signal(rng, time[h], p, t0, d, density)
        relative[h] -= loss
        # Transits that actually fall on a cadence (a gap can swallow one).
        in_transit = loss > 0.0
        starts = in_transit & ~np.concatenate([np.zeros((count, 1), bool), in_transit[:, :-1]], axis=1)
        n_transits[h] = starts.sum(axis=1)
        # Cap the white noise so the summed transit signal is at least 7-12 sigma.
        points_in_transit = np.maximum(in_transit.sum(axis=1), 1)
        snr_floor = rng.uniform(7.0, 12.0, count)
        white_sigma[h] = np.minimum(white_sigma[h], d * np.sqrt(points_in_transit) / snr_floor)
        period[h], depth[h], epoch[h] = p, d, t0
        transit_norm = np.sqrt((loss**2).sum(axis=1))  # the matched filter's signal, both S/N's numerator
        snr_white[h] = transit_norm / white_sigma[h]
        extra = rng.random(count)
        relative[h[extra < 0.05]] += _flares(rng, time[h[extra < 0.05]], max_flares=3)
        pulsing = h[(extra >= 0.05) & (extra < 0.10)]
        relative[pulsing] += _pulsations(rng, time[pulsing])

    for name, make in (("sensitivity_dropout", _sensitivity_dropout), ("thruster_sawtooth", _thruster_sawtooth),
                       ("flares", _flares), ("pulsator", _pulsations)):
        selected = np.flatnonzero(kind == name)
        if selected.size:
            relative[selected] += make(rng, time[selected])
    fast = np.flatnonzero(kind == "fast_rotator")
    if fast.size:
        relative[fast] += _spots(rng, time[fast], log_uniform(rng, 0.15, 1.0, fast.size),
                                 log_uniform(rng, 3e-3, 3e-2, fast.size))
    binary = np.flatnonzero(kind == "eclipsing_binary")
    if binary.size:
        signal, p, d, t0, n_ecl, eclipse_duration, diluted = eclipsing_binary(rng, time[binary])
        relative[binary] += signal
        period[binary], depth[binary], epoch[binary], n_transits[binary] = p, d, t0, n_ecl
        duration[binary] = eclipse_duration
        kind[binary[diluted]] = "diluted_eclipsing_binary"

    # Cosmic rays: single upward cadences.
    hits = rng.random((rows, n)) < 2.0 / n
    relative += hits * log_uniform(rng, 3.0, 30.0, (rows, n)) * white_sigma[:, None]
    relative += white_sigma[:, None] * rng.standard_normal((rows, n))
    if host.any():
        # The S/N a survey would quote: against the noise on the transit's own timescale
        # (granulation, residual spot light and white noise), measured on the curve without
        # its transits, detrended over a day (the function's default window: 49 cadences).
        # Granulation can bury a transit whose white-noise S/N is in the hundreds.
        snr[h] = transit_norm / noise_on_timescale(relative[h] + loss, duration[h] / CADENCE_DAYS)

    level = 1.0 / (white_sigma**2 * EXPOSURE_SECONDS)  # e-/s of a photon-noise-limited star
    flux = level[:, None] * (1.0 + relative)
    flux -= flux.mean(axis=1, keepdims=True)
    return SyntheticCurves(flux=np.round(flux, 2), label=labels, kind=kind, period=period, depth=depth,
                           epoch=epoch, n_transits=n_transits, time=time, duration=duration, snr=snr, snr_white=snr_white,
                           white_noise=white_sigma, spot_amplitude=spot_amplitude)


TRUTH_SUFFIX = ".truth.json"
TRUTH_COLUMNS = {  # name in the truth file: (SyntheticCurves field, meaning)
    "kind": ("kind", "planet, quiet, or the kind of non-host (eclipsing_binary, diluted_eclipsing_binary, "
                     "sensitivity_dropout, thruster_sawtooth, flares, pulsator, fast_rotator)"),
    "snr": ("snr", "S/N of all transits against the noise on their timescale, as surveys quote it: "
                   "sqrt(sum(signal^2)) / (scatter of the 1-day-detrended curve without transits, averaged "
                   "over a transit duration, times sqrt(duration in cadences)) (planets)"),
    "snr_white": ("snr_white", "S/N of all transits against the white noise alone, sqrt(sum(signal^2)) / "
                               "white noise (planets; above snr where granulation adds noise)"),
    "period_days": ("period", "planet or binary period"),
    "epoch_days": ("epoch", "time of one mid-transit or primary eclipse, days after the first cadence"),
    "depth": ("depth", "relative depth at mid-transit or mid-eclipse"),
    "duration_days": ("duration", "transit or eclipse duration"),
    "transits": ("n_transits", "transits or primary eclipses that fall on a cadence"),
    "white_noise": ("white_noise", "relative white noise per cadence"),
    "spot_amplitude": ("spot_amplitude", "relative amplitude of the spot modulation"),
}


def truth_file(csv_path: Path) -> Path:
    """Where the truth of a built-in CSV file is written: beside it, not in its layout."""
    return Path(csv_path).with_suffix(TRUTH_SUFFIX)


def truth_table(curves: SyntheticCurves, rows: np.ndarray) -> dict:
    """JSON-able truth of ``rows``: each curve's kind and true parameters (null where none)."""
    table = {"line": (np.arange(rows.size) + 2).tolist(), "label": curves.label[rows].astype(int).tolist()}
    for name, (attribute, _) in TRUTH_COLUMNS.items():
        values = getattr(curves, attribute)[rows]
        if values.dtype.kind in "US":
            table[name] = values.tolist()
        else:
            table[name] = [None if not np.isfinite(v) else round(float(v), 8) for v in values.astype(np.float64)]
    return {"description": {"line": "line of the curve in the CSV file (header = line 1)",
                            "label": "LABEL as written: 2 = planet host, 1 = not"}
            | {name: meaning for name, (_, meaning) in TRUTH_COLUMNS.items()}, "rows": table}


def write_synthetic_dataset(data_dir: Path, config: SyntheticConfig, seed: int) -> list[Path]:
    """Generate the built-in data set into ``data_dir/synthetic/`` as Kaggle-layout CSV files.

    Beside each CSV file, ``<name>.truth.json`` records each curve's kind and true parameters
    (``truth_table``): not part of the Kaggle layout, and not read by training.

    The files are written into a hidden temporary folder that is renamed into place when all
    are complete (a folder rename is atomic), so an interrupted generation never leaves a
    partial data set for the next run to discover and train on.
    """
    import shutil

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from atomic_io import fsync_path

    curves = generate_light_curves(config.rows, seed, config.positive_fraction)
    data_dir = Path(data_dir)
    final = data_dir / "synthetic"
    staging = data_dir / f".synthetic.tmp-{os.getpid()}"
    for stale in data_dir.glob(".synthetic.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging.mkdir(parents=True)
    names = ["LABEL"] + [f"FLUX.{i}" for i in range(1, curves.flux.shape[1] + 1)]
    written = []
    for index, rows in enumerate(np.array_split(np.arange(config.rows), config.files)):
        suffix = f"_{index + 1:02d}" if config.files > 1 else ""
        path = staging / f"synthetic_kepler{suffix}.csv"
        columns = [pa.array(curves.label[rows].astype(np.int64))]
        columns += [pa.array(curves.flux[rows, j]) for j in range(curves.flux.shape[1])]
        with open(path, "wb") as handle:
            # Header written by hand: Arrow would quote the names, Kaggle's files don't.
            handle.write((",".join(names) + "\n").encode())
            pa_csv.write_csv(pa.Table.from_arrays(columns, names=names), handle,
                             pa_csv.WriteOptions(include_header=False))
        fsync_path(path)
        with open(truth_file(path), "w", encoding="utf-8") as handle:
            json.dump(truth_table(curves, rows), handle)
        fsync_path(truth_file(path))
        written.append(final / path.name)
    fsync_path(staging)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    fsync_path(data_dir)
    return written


def is_built_in(data_dir: Path, names: list[str]) -> bool:
    """Whether every one of these data files (relative to ``data_dir``) is built-in data with its truth."""
    return bool(names) and all(truth_file(Path(data_dir) / name).is_file() for name in names)

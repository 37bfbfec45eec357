"""The power at each trial period's harmonics: a second view of the curve for the network.

A train of narrow dips puts its power at the harmonics k / P of its period, and pulsar searches
find such trains by summing the power over the first harmonics (incoherent harmonic summing).
The network's convolutions and LSTM see the curve 64 cadences a step, too coarse to add up the
many shallow transits of a short-period planet; the spectrum adds them up wherever they are.
It does not care where the dips are (a shift or a reversal of the curve leaves it alone), and a
phase jump at a closed-up gap of a Kaggle-layout row adds the stretches' power instead of
cancelling it.

``HarmonicPower`` (a Keras layer, ``ModelConfig.spectrum_harmonics``) computes, for each curve:
the power spectrum of its first channel (mean removed, zero-padded to ``fft_length``), whitened
by the mean power of the ``WHITEN_BINS`` bins either side (the star's red noise varies with
frequency), the highest of each bin and its two neighbours (a harmonic may fall a bin off its
rounded place), and then, for each trial period, the power at its first ``harmonics``
harmonics, capped at ``CAP`` (a deep eclipse's thousandfold power would swamp the scale). The
trial periods run from ``PERIOD_CADENCES[0]`` cadences to ``PERIOD_CADENCES[1]`` or half the
window, whichever is shorter (0.5-32 days on the default Kepler long-cadence grid), a quarter
of a frequency bin apart (``harmonic_index``).

With ``coherent`` the layer also folds: for each trial period it adds up the first harmonics'
complex amplitudes (whitened the same way) with their phases, which is the curve folded at that
period and smoothed to those harmonics (a transit train's harmonics all peak together at its
transits), and reads the deepest dip and the highest peak of that profile over
``COHERENT_PHASES`` phases, for the first 3, 6 and 12 harmonics (``COHERENT_GROUPS``), in
sigmas of the noise. Summed in phase, a dip train's harmonics add as their count and the noise
as its root; summed as powers, the faintest train that shows falls only as the fourth root of
the count. A sine (a pulsator, a spotted star) folds to a dip and a peak alike, a transit train
to a dip alone. A closed-up gap breaks the phase, so the summed powers stay beside it. An
option (``ModelConfig.spectrum_coherent``), off: side by side with the default it found no more
hosts, for epochs 1.12 times as long (docs/detector_levers.md).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from synthetic_data import CADENCE_DAYS
from transit_search import PERIOD_RANGE_DAYS

# The classical search's periods, 0.5 and 32 days, in cadences of the default (Kepler long-cadence) grid.
PERIOD_CADENCES = tuple(days / CADENCE_DAYS for days in PERIOD_RANGE_DAYS)
FUNDAMENTAL_STEP_BINS = 0.25
WHITEN_BINS = 64
CAP = 30.0
COHERENT_PHASES = 32
COHERENT_GROUPS = (3, 6, 12)


def fft_length(sequence_length: int) -> int:
    """The power of two at least 2.5 times the window: zero padding that keeps a harmonic's peak
    within about a bin of where it is looked for.

    >>> fft_length(3197), fft_length(128)
    (8192, 512)
    """
    return int(2 ** np.ceil(np.log2(2.5 * sequence_length)))


def harmonic_index(sequence_length: int, harmonics: int) -> tuple[np.ndarray, np.ndarray]:
    """([periods, harmonics] the frequency bin of each trial period's first harmonics, [periods,
    harmonics] 1 where that bin lies within the spectrum, 0 where it lies beyond, clipped there).

    >>> index, inside = harmonic_index(128, 3)
    >>> index[0].tolist(), index[-1].tolist(), inside[-1].tolist()
    ([8, 16, 24], [21, 42, 62], [1.0, 1.0, 1.0])
    """
    length = fft_length(sequence_length)
    index = np.rint(_harmonic_bins(sequence_length, harmonics)).astype(np.int64)
    last = length // 2
    return np.minimum(index, last).astype(np.int32), (index <= last).astype(np.float32)


def coherent_groups(harmonics: int) -> tuple[int, ...]:
    """The counts of first harmonics whose coherent sums the layer reads: those of
    ``COHERENT_GROUPS`` below ``harmonics``, and ``harmonics`` itself.

    >>> coherent_groups(12), coherent_groups(4), coherent_groups(2)
    ((3, 6, 12), (3, 4), (2,))
    """
    return tuple(g for g in COHERENT_GROUPS if g < harmonics) + (int(harmonics),)


def fold_phase(sequence_length: int, harmonics: int) -> tuple[np.ndarray, np.ndarray]:
    """([periods, harmonics] cosine, sine) of each trial period's harmonics' phase at the middle
    of the window: the turn that takes a harmonic's amplitude (``numpy.fft.rfft``'s, phases from
    the first cadence) to phases from the middle, where a harmonic read a fraction of a bin off its
    true frequency (``harmonic_index`` rounds) keeps its true phase. Then the harmonics sum to the
    profile folded about the middle (an inverse DFT over the harmonic number).

    >>> cos, sin = fold_phase(128, 3)
    >>> cos.shape, bool(np.allclose(cos ** 2 + sin ** 2, 1.0))
    ((52, 3), True)
    """
    middle = 0.5 * (sequence_length - 1)
    frequency = _harmonic_bins(sequence_length, harmonics) / fft_length(sequence_length)
    angle = 2 * np.pi * frequency * middle
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


def _fundamentals(sequence_length: int) -> np.ndarray:
    """Each trial period's fundamental frequency in (fractional) bins of ``fft_length``."""
    length = fft_length(sequence_length)
    longest = min(PERIOD_CADENCES[1], 0.5 * sequence_length)
    return np.arange(length / longest, length / PERIOD_CADENCES[0], FUNDAMENTAL_STEP_BINS)


def _harmonic_bins(sequence_length: int, harmonics: int) -> np.ndarray:
    """[periods, harmonics] each trial period's first ``harmonics`` harmonics in (fractional) bins
    of ``fft_length``: where ``harmonic_index`` reads the spectrum and ``fold_phase`` turns it."""
    return _fundamentals(sequence_length)[:, None] * np.arange(1, harmonics + 1)[None, :]


@cache
def harmonic_power_layer():
    """The ``HarmonicPower`` Keras layer class, registered for loading saved models (``safe_mode``
    loads registered classes by name); Keras is imported on the first call, not with this module."""
    import keras

    @keras.saving.register_keras_serializable(package="exoplanet")
    class HarmonicPower(keras.layers.Layer):
        """[batch, periods, harmonics]: the whitened power at each trial period's first
        ``harmonics`` harmonics, of the first channel of [batch, cadences, channels]. With
        ``coherent``, [batch, periods, harmonics + 2 * groups]: then, for each count of
        ``coherent_groups``, the deepest dip and the highest peak of the folded profile."""

        def __init__(self, harmonics: int, sequence_length: int, coherent: bool = False, **kwargs):
            super().__init__(**kwargs)
            self.harmonics, self.sequence_length = int(harmonics), int(sequence_length)
            self.coherent = bool(coherent)
            self.fft_length = fft_length(self.sequence_length)
            self.index, self.inside = harmonic_index(self.sequence_length, self.harmonics)
            if self.coherent:
                self.cos, self.sin = fold_phase(self.sequence_length, self.harmonics)
                self.groups = coherent_groups(self.harmonics)
                # [2 * harmonics, groups * phases]: Re(a exp(i angle)) of the (real, imaginary)
                # amplitudes, each group's first harmonics at each phase.
                angle = 2 * np.pi * np.arange(1, self.harmonics + 1)[:, None] * np.arange(COHERENT_PHASES)[None, :] / COHERENT_PHASES
                within = [(np.arange(self.harmonics) < g)[:, None] for g in self.groups]
                self.basis = np.concatenate([np.concatenate([np.cos(angle) * w for w in within], axis=1),
                                             np.concatenate([-np.sin(angle) * w for w in within], axis=1)]).astype(np.float32)
                # Each harmonic's real part carries half its whitened power: a sum's noise sigma.
                counted = np.cumsum(self.inside, axis=1)[:, [g - 1 for g in self.groups]]
                self.noise = np.tile(np.sqrt(np.maximum(counted, 1.0) / 2.0), 2).astype(np.float32)  # [periods, dips and peaks]

        def call(self, inputs):
            from keras import ops

            flux = inputs[:, :, 0]
            flux = flux - ops.mean(flux, axis=1, keepdims=True)
            real, imag = ops.rfft(flux, fft_length=self.fft_length)
            power = real * real + imag * imag
            # The mean of the WHITEN_BINS bins either side, by a running sum over the reflected ends.
            padded = ops.pad(power, [[0, 0], [WHITEN_BINS, WHITEN_BINS]], mode="reflect")
            total = ops.cumsum(padded, axis=1)
            width = self.fft_length // 2 + 1
            local = (total[:, 2 * WHITEN_BINS:2 * WHITEN_BINS + width] - total[:, :width]) / (2 * WHITEN_BINS)
            white = power / (local + 1e-6)
            highest = ops.maximum(white, ops.maximum(ops.roll(white, 1, axis=1), ops.roll(white, -1, axis=1)))
            index, inside = ops.convert_to_tensor(self.index.ravel()), ops.convert_to_tensor(self.inside)

            def at_harmonics(bins):
                """[batch, periods, harmonics]: ``bins`` [batch, bins] read at each period's harmonics."""
                return ops.reshape(ops.take(bins, index, axis=1), (-1,) + self.index.shape) * inside

            incoherent = ops.minimum(at_harmonics(highest), CAP)
            if not self.coherent:
                return incoherent
            scale = ops.sqrt(local + 1e-6)
            re, im = at_harmonics(real / scale), at_harmonics(imag / scale)
            # Phases from the middle of the window, then the inverse DFT over the harmonic number:
            # the profile of each group at COHERENT_PHASES phases, all in one matrix product.
            cos, sin = ops.convert_to_tensor(self.cos), ops.convert_to_tensor(self.sin)
            turned = ops.concatenate([re * cos - im * sin, re * sin + im * cos], axis=2)
            profiles = ops.matmul(turned, ops.convert_to_tensor(self.basis))
            profiles = ops.reshape(profiles, (-1, self.index.shape[0], len(self.groups), COHERENT_PHASES))
            # In sigmas of the noise: a positive scale, so taken after the extremes (fewer values).
            extremes = ops.concatenate([-ops.min(profiles, axis=3), ops.max(profiles, axis=3)], axis=2) / self.noise
            return ops.concatenate([incoherent, ops.minimum(extremes, CAP)], axis=2)

        def compute_output_shape(self, input_shape):
            width = self.harmonics + (2 * len(self.groups) if self.coherent else 0)
            return (input_shape[0], self.index.shape[0], width)

        def get_config(self):
            return super().get_config() | {"harmonics": self.harmonics, "sequence_length": self.sequence_length,
                                           "coherent": self.coherent}

    return HarmonicPower


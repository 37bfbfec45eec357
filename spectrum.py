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
    longest = min(PERIOD_CADENCES[1], 0.5 * sequence_length)
    fundamentals = np.arange(length / longest, length / PERIOD_CADENCES[0], FUNDAMENTAL_STEP_BINS)
    index = np.rint(fundamentals[:, None] * np.arange(1, harmonics + 1)[None, :]).astype(np.int64)
    last = length // 2
    return np.minimum(index, last).astype(np.int32), (index <= last).astype(np.float32)


@cache
def harmonic_power_layer():
    """The ``HarmonicPower`` Keras layer class, registered for loading saved models (``safe_mode``
    loads registered classes by name); Keras is imported on the first call, not with this module."""
    import keras

    @keras.saving.register_keras_serializable(package="exoplanet")
    class HarmonicPower(keras.layers.Layer):
        """[batch, periods, harmonics]: the whitened power at each trial period's first
        ``harmonics`` harmonics, of the first channel of [batch, cadences, channels]."""

        def __init__(self, harmonics: int, sequence_length: int, **kwargs):
            super().__init__(**kwargs)
            self.harmonics, self.sequence_length = int(harmonics), int(sequence_length)
            self.fft_length = fft_length(self.sequence_length)
            self.index, self.inside = harmonic_index(self.sequence_length, self.harmonics)

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
            at_harmonics = ops.take(highest, ops.convert_to_tensor(self.index.ravel()), axis=1)
            at_harmonics = ops.reshape(at_harmonics, (-1,) + self.index.shape) * ops.convert_to_tensor(self.inside)
            return ops.minimum(at_harmonics, CAP)

        def compute_output_shape(self, input_shape):
            return (input_shape[0],) + self.index.shape

        def get_config(self):
            return super().get_config() | {"harmonics": self.harmonics, "sequence_length": self.sequence_length}

    return HarmonicPower


#!/usr/bin/env python3
"""The transit model: ``synthetic_data.transit_loss`` against evaluating it at every cadence.

The built-in hosts and every injected planet go through ``transit_loss``. It models only the
cadences where the planet's disk overlaps the star's (a few percent of them); the baseline here,
the code before that change, evaluates the limb-darkened overlap at every cadence and zeroes
the rest. Same planets, alternating within each repetition; the script checks that both give
the same bits and reports curves per second (median).

    python3 bench/transit_model.py
    python3 bench/transit_model.py --rows 200 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import machine, write_result


def every_cadence(time_, period, epoch, depth, density, u1, u2, impact):
    """``transit_loss`` as it was: the overlap evaluated at every cadence."""
    from synthetic_data import _exposure_average, _limb_darkened_transit

    u1, u2 = u1[:, None], u2[:, None]
    a_over_r = 4.2066 * period ** (2.0 / 3.0) * density ** (1.0 / 3.0)
    mu_b = np.sqrt(1.0 - impact**2)
    centre_intensity = (1.0 - u1[:, 0] * (1.0 - mu_b) - u2[:, 0] * (1.0 - mu_b) ** 2)
    k = np.sqrt(depth * (1.0 - u1[:, 0] / 3.0 - u2[:, 0] / 6.0) / centre_intensity)
    cos_i = impact / a_over_r

    def loss(t):
        phase = 2.0 * np.pi * (t - epoch[:, None]) / period[:, None]
        x = a_over_r[:, None] * np.sin(phase)
        y = a_over_r[:, None] * cos_i[:, None] * np.cos(phase)
        z = np.sqrt(x**2 + y**2)
        return np.where(np.cos(phase) > 0.0, _limb_darkened_transit(z, k[:, None], u1, u2), 0.0)

    return _exposure_average(loss, time_)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from synthetic_data import CADENCE_DAYS, N_CADENCES, draw_geometry, draw_planets, transit_loss

    time_ = np.broadcast_to(np.arange(N_CADENCES) * CADENCE_DAYS, (args.rows, N_CADENCES))
    planets = draw_planets(np.random.default_rng(1), time_)
    geometry = draw_geometry(np.random.default_rng(2), args.rows)
    seconds = {"every cadence": [], "transit_loss": []}
    for _ in range(args.repeats):
        started = time.perf_counter()
        baseline = every_cadence(time_, *planets, *geometry)
        seconds["every cadence"].append(time.perf_counter() - started)
        started = time.perf_counter()
        ours, _ = transit_loss(time_, *planets, *geometry)
        seconds["transit_loss"].append(time.perf_counter() - started)
    identical = bool(np.array_equal(baseline.view(np.uint64), ours.view(np.uint64)))
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    result = {"rows": args.rows, "repeats": args.repeats, "seconds": seconds, "identical_bits": identical,
              "curves_per_second": {name: args.rows / value for name, value in median.items()},
              "speed_ratio": median["every cadence"] / median["transit_loss"],
              "in_transit_fraction": float((ours != 0).mean()), "machine": machine()}
    print(f"{args.rows} planets x {N_CADENCES} cadences x 5 sub-exposures, median of {args.repeats}:")
    for name in seconds:
        print(f"  {name:14s} {result['curves_per_second'][name]:8.0f} curves/s")
    print(f"  speed-up {result['speed_ratio']:.2f}x; same bits: {identical}; "
          f"{result['in_transit_fraction']:.1%} of cadences in transit")
    print(f"written to {write_result('transit_model', result)}")
    if not identical:
        raise SystemExit("the transit model's output changed")


if __name__ == "__main__":
    main()

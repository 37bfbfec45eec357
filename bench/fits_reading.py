#!/usr/bin/env python3
"""Reading FITS light curves: the trainer's reader against a bare ``astropy.io.fits`` read.

Writes ``--files`` Kepler-like long-cadence FITS files (a quarter each: 4354 cadences, the
columns and header the Kepler pipeline writes, a few flagged and empty cadences), then reads
all of them, alternating within each repetition:
    astropy    ``fits.open`` and the TIME, PDCSAP_FLUX, PDCSAP_FLUX_ERR and SAP_QUALITY columns
               to numpy: the least any reader does (the baseline of the ratio);
    trainer    ``datasets.load_survey_file``: the same read, then the quality mask, relative
               flux, error-weighted averaging onto the 29.4-min grid and the cut into windows.
Reports curves per second (median of the repetitions) and the trainer/astropy time ratio.

    python3 bench/fits_reading.py
    python3 bench/fits_reading.py --files 200 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, write_result

CADENCE = 29.4244 / 1440


def write_files(folder: Path, count: int) -> list[Path]:
    from astropy.io import fits

    rng = np.random.default_rng(0)
    paths = []
    for number in range(count):
        time_stamps = 169.76 + np.arange(4354) * CADENCE
        flux = (5e4 * (1 + rng.normal(0, 2e-4, time_stamps.size))).astype(np.float32)
        flux[rng.integers(0, flux.size, 20)] = np.nan
        quality = np.zeros(time_stamps.size, np.int32)
        quality[rng.integers(0, flux.size, 30)] = 32
        columns = [fits.Column("TIME", "D", array=time_stamps), fits.Column("SAP_FLUX", "E", array=flux),
                   fits.Column("PDCSAP_FLUX", "E", array=flux),
                   fits.Column("PDCSAP_FLUX_ERR", "E", array=np.full(flux.size, 10.0, np.float32)),
                   fits.Column("SAP_QUALITY", "J", array=quality)]
        header = fits.Header()
        header.update(TELESCOP="Kepler", MISSION="Kepler", KEPLERID=number + 1, OBJECT=f"KIC {number + 1}", QUARTER=2)
        path = folder / f"kplr{number + 1:09d}-2009259160929_llc.fits"
        fits.HDUList([fits.PrimaryHDU(header=header),
                      fits.BinTableHDU.from_columns(columns, name="LIGHTCURVE")]).writeto(path)
        paths.append(path)
    return paths


def bare_astropy(paths: list[Path]) -> int:
    from astropy.io import fits

    total = 0
    for path in paths:
        with fits.open(path, memmap=False) as hdus:
            data = hdus[1].data
            columns = [np.asarray(data[name]) for name in ("TIME", "PDCSAP_FLUX", "PDCSAP_FLUX_ERR", "SAP_QUALITY")]
            total += columns[0].size
    return total


def trainer(paths: list[Path]) -> int:
    from datasets import load_survey_file
    from preprocessing import PreprocessingConfig

    config = PreprocessingConfig()
    return sum(load_survey_file(path, config).flux.shape[0] for path in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_files(Path(folder), args.files)
        seconds = {"astropy": [], "trainer": []}
        trainer(paths[:5])  # imports
        for _ in range(args.repeats):
            for name, read in (("astropy", bare_astropy), ("trainer", trainer)):
                started = time.perf_counter()
                read(paths)
                seconds[name].append(time.perf_counter() - started)
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    result = {"files": args.files, "repeats": args.repeats, "seconds": seconds,
              "curves_per_second": {name: args.files / value for name, value in median.items()},
              "trainer_to_astropy_time": median["trainer"] / median["astropy"], "machine": machine()}
    print(f"{args.files} Kepler long-cadence FITS files (4354 cadences each), median of {args.repeats}:")
    for name in seconds:
        print(f"  {name:8s} {result['curves_per_second'][name]:8.0f} curves/s  ({median[name]:.2f} s)")
    print(f"  trainer / astropy time: {result['trainer_to_astropy_time']:.2f}")
    print(f"written to {write_result('fits_reading', result)}")


if __name__ == "__main__":
    main()

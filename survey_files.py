"""Readers for light curves as the missions and their users publish them: one star per file.

Each reader is a small function returning a ``SurveyCurve`` (time in days, flux, errors, the
star and where it was observed); ``datasets`` bins it onto the model's grid and cuts it into
windows. The layout is recognised from the content, not from the file name:

    FITS (``SIMPLE`` card)  Kepler and K2 long cadence (``kplr*_llc.fits``, ``ktwo*_llc.fits``),
                            TESS SPOC 2-minute and 20-second (``tess*-s_lc.fits``), and
                            high-level products with other column names (K2SC: ``time``,
                            ``flux``, ``error``, ``quality`` in extensions named for the flux
                            kind; QLP: ``KSPSAP_FLUX``; TESS-SPOC FFI): the first table with a
                            time and a flux column is read.
    time-series CSV/TSV     lightkurve's ``LightCurve.to_csv`` (time, flux, flux_err, quality,
                            ...) and any CSV or TSV with a time column and a flux column.
    Kaggle wide CSV         ``LABEL, FLUX.1 ... FLUX.N``, many stars per file: ``datasets``
                            reads it as before (``read_header`` recognises it).

Flux column: ``PDCSAP_FLUX`` where it exists, then ``KSPSAP_FLUX``, ``FLUX``, ``DET_FLUX``,
``SAP_FLUX`` (any case); ``PreprocessingConfig.flux_column`` (``--flux-column``) picks another.
Cadences flagged by the quality bits of ``quality_bitmask`` (lightkurve's "default" unless set)
are dropped, as are non-finite times and fluxes. Flux is returned relative to its median, in ppm.
Only astropy is needed: lightkurve's files are read without lightkurve.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from errors import TrainerError
from preprocessing import PreprocessingConfig, quality_bits

LAYOUTS = ("Kepler/K2/TESS light-curve FITS (kplr*_llc, ktwo*_llc, tess*_lc)",
           "high-level FITS with time and flux columns (K2SC, QLP, TESS-SPOC)",
           "time-series CSV or TSV with a time and a flux column (lightkurve's to_csv)",
           "Kaggle wide CSV (LABEL, FLUX.1 ... FLUX.N)")
FLUX_COLUMNS = ("pdcsap_flux", "kspsap_flux", "flux", "det_flux", "sap_flux")
TIME_COLUMNS = ("time", "btjd", "bkjd", "bjd", "tbjd", "jd", "mjd", "t")
QUALITY_COLUMNS = ("quality", "sap_quality")
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
_HEADER_KEYS = ("TELESCOP", "MISSION", "OBJECT", "KEPLERID", "TICID", "QUARTER", "CAMPAIGN", "SECTOR")


class SurveyFileError(TrainerError):
    """A survey light-curve file cannot be read; the message names it and says why."""


@dataclass
class SurveyCurve:
    """One star's light curve from one file (a quarter, a campaign or a sector)."""

    time: np.ndarray              # [samples] days (BJD - offset as the file gives it), increasing
    flux: np.ndarray              # [samples] ppm relative to the median flux
    flux_err: np.ndarray | None   # [samples] ppm, or None
    star: str                     # "KIC 10666592", "EPIC 211309989", "TIC 402026209", or the file's name
    mission: str                  # "Kepler", "K2", "TESS" or ""
    segment: str                  # "Q2", "C5", "S1" or ""
    layout: str                   # which reader read it
    flux_column: str
    flagged: int                  # cadences dropped by their quality flags


def is_fits(path: Path) -> bool:
    """True if the file starts like a FITS file (or is gzip-compressed with a FITS name)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return name.endswith(FITS_SUFFIXES)
    try:
        with open(path, "rb") as handle:
            return handle.read(30).startswith(b"SIMPLE  =")
    except OSError:
        return False


def star_from_name(name: str) -> str:
    """The target named by a mission file name (``kplr010666592-...`` -> ``KIC 10666592``), else its stem.

    >>> star_from_name("kplr010666592-2009259160929_llc.fits"), star_from_name("tic_402026209.csv")
    ('KIC 10666592', 'TIC 402026209')
    """
    base = Path(name).name
    for pattern, prefix in ((r"kplr(\d{9})", "KIC"), (r"ktwo(\d{9})", "EPIC"), (r"k2_llc_(\d{9})", "EPIC"),
                            (r"tess\d+-s\d+-(\d{16})", "TIC")):
        match = re.search(pattern, base, re.IGNORECASE)
        if match:
            return f"{prefix} {int(match.group(1))}"
    named = normalise_star(base)
    if named:
        return named
    stem = base
    for suffix in (".gz", ".fits", ".fit", ".fts", ".csv", ".tsv"):
        stem = stem[:-len(suffix)] if stem.lower().endswith(suffix) else stem
    return stem


def normalise_star(text: str) -> str | None:
    """A target ID in one spelling: ``KIC 10666592`` from ``kic10666592``, ``KIC 010666592``,
    ``HAT-P-7 (Kepler-2; KIC 10666592)``; None if the text names no KIC, EPIC or TIC number."""
    match = re.search(r"(?i)(?<![a-z])(KIC|EPIC|TIC)[ _-]?0*(\d+)(?!\d)", str(text))
    return f"{match.group(1).upper()} {int(match.group(2))}" if match else None


def _pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {name.lower(): name for name in names}
    return next((lower[w] for w in wanted if w in lower), None)


def _flux_column(path: Path, names: list[str], config: PreprocessingConfig) -> str:
    if config.flux_column:
        found = _pick(names, (config.flux_column.lower(),))
        if found is None:
            raise SurveyFileError(f"{path}: no flux column {config.flux_column!r} (columns: {', '.join(names[:12])}); "
                                  "choose one of those with --flux-column")
        return found
    found = _pick(names, FLUX_COLUMNS)
    if found is None:
        raise SurveyFileError(f"{path}: no flux column ({', '.join(c.upper() for c in FLUX_COLUMNS)}) among "
                              f"{', '.join(names[:12])}; name one with --flux-column")
    return found


def _error_column(names: list[str], flux_name: str) -> str | None:
    """The uncertainty column of ``flux_name``: ``<flux>_ERR``, else a generic error column."""
    return _pick(names, (f"{flux_name.lower()}_err", "flux_err", "error", "err"))


def _relative_ppm(flux: np.ndarray, error: np.ndarray | None):
    level = float(np.median(flux)) if flux.size else 0.0
    if not np.isfinite(level) or level <= 0:
        # Already relative or mean-subtracted (a detrended product): keep the scale, centre it.
        return flux - level, error
    return (flux / level - 1.0) * 1e6, None if error is None else error / level * 1e6


def _clean(path: Path, time, flux, error, quality, mission: str, config: PreprocessingConfig):
    """Drop flagged and non-finite cadences; returns (time, flux, error, flagged count)."""
    time = np.asarray(time, np.float64)
    flux = np.asarray(flux, np.float64)
    error = None if error is None else np.asarray(error, np.float64)
    keep = np.isfinite(time) & np.isfinite(flux)
    flagged = 0
    if quality is not None:
        bits = quality_bits(config.quality_bitmask, mission.lower())
        bad = (np.nan_to_num(np.asarray(quality, np.float64)).astype(np.int64) & bits) != 0
        flagged = int((bad & keep).sum())
        keep &= ~bad
    if keep.sum() < 2:
        raise SurveyFileError(f"{path}: fewer than 2 usable cadences after dropping {flagged} flagged and "
                              f"{int((~np.isfinite(flux)).sum())} empty ones; check the file or set quality_bitmask")
    order = np.argsort(time[keep], kind="stable")
    time, flux = time[keep][order], flux[keep][order]
    error = None if error is None else error[keep][order]
    flux, error = _relative_ppm(flux, error)
    return time, flux, error, flagged


def _mission(header) -> str:
    telescope = str(header.get("TELESCOP", "")).strip().upper()
    mission = str(header.get("MISSION", "")).strip().upper()
    if telescope == "TESS" or mission == "TESS":
        return "TESS"
    if mission == "K2" or header.get("CAMPAIGN") is not None:
        return "K2"
    if telescope == "KEPLER" or mission == "KEPLER":
        return "Kepler"
    return ""


def read_fits(path: Path, config: PreprocessingConfig) -> SurveyCurve:
    """Read a light-curve FITS file: the first table with a time and a flux column.

    Raises:
        SurveyFileError: naming the file, when it is not a FITS light curve this can read.
    """
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # a damaged file says so in one line below
            hdus = fits.open(path, memmap=False)
        with hdus:
            primary = hdus[0].header
            for number in itertools.count(1):
                try:
                    hdu = hdus[number]  # read on demand: the extensions after the light curve stay unread
                except IndexError:
                    break
                if not isinstance(hdu, fits.BinTableHDU):
                    continue
                names = list(hdu.columns.names)
                time_name = _pick(names, TIME_COLUMNS)
                if time_name is None or _pick(names, FLUX_COLUMNS + ((config.flux_column.lower(),)
                                                                   if config.flux_column else ())) is None:
                    continue
                flux_name = _flux_column(path, names, config)
                error_name = _error_column(names, flux_name)
                quality_name = _pick(names, QUALITY_COLUMNS)
                data = hdu.data
                # Only the keywords used, not the whole header (parsing every card costs more than the data).
                header = {key: hdu.header.get(key, primary.get(key)) for key in _HEADER_KEYS}
                mission = _mission(header)
                time, flux, error, flagged = _clean(
                    path, data[time_name], data[flux_name], None if error_name is None else data[error_name],
                    None if quality_name is None else data[quality_name], mission, config)
                layout = "mission FITS" if flux_name.upper() in ("PDCSAP_FLUX", "SAP_FLUX") else \
                    f"high-level FITS ({hdu.name or 'table'} {flux_name})"
                return SurveyCurve(time=time, flux=flux, flux_err=error, star=_fits_star(path, header),
                                   mission=mission, segment=_segment(header), layout=layout,
                                   flux_column=flux_name, flagged=flagged)
    except SurveyFileError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError) as error:
        raise SurveyFileError(f"{path}: cannot be read as FITS ({str(error).splitlines()[0][:120]}); "
                              f"replace the file or remove it (known layouts: {'; '.join(LAYOUTS)})") from None
    raise SurveyFileError(f"{path}: a FITS file without a table of time and flux columns; known layouts: "
                          f"{'; '.join(LAYOUTS)}")


def _fits_star(path: Path, header) -> str:
    mission = _mission(header)
    for key, prefix in (("TICID", "TIC"), ("KEPLERID", "EPIC" if mission == "K2" else "KIC")):
        value = header.get(key)
        if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().isdigit()):
            return f"{prefix} {int(value)}"
    named = normalise_star(str(header.get("OBJECT", "")))
    return named or str(header.get("OBJECT", "")).strip() or star_from_name(path.name)


def _segment(header) -> str:
    for key, prefix in (("QUARTER", "Q"), ("CAMPAIGN", "C"), ("SECTOR", "S")):
        value = header.get(key)
        if value is not None and str(value).strip() not in ("", "-1"):
            return f"{prefix}{value}"
    return ""


def sniff_table(first_line: str) -> tuple[str, list[str]] | None:
    """(delimiter, column names) when a header line names a time and a flux column, else None."""
    delimiter = "\t" if "\t" in first_line else ("," if "," in first_line else None)
    names = [n.strip().strip('"') for n in (first_line.split(delimiter) if delimiter else first_line.split())]
    if _pick(names, TIME_COLUMNS) is None or not any(n.lower().endswith("flux") for n in names):
        return None
    return delimiter or r"\s+", names


def read_time_series_table(path: Path, config: PreprocessingConfig) -> SurveyCurve:
    """Read a CSV or TSV of one star: a time column and a flux column (lightkurve's ``to_csv``).

    Lines starting with ``#`` are comments. The star comes from the file name
    (``star_from_name``), and the mission from the star's catalogue (TIC: TESS, EPIC: K2, KIC:
    Kepler) where it names one; the segment is unknown.

    Raises:
        SurveyFileError: naming the file, the column or the line at fault.
    """
    import pandas as pd

    first = first_line(path)
    sniffed = sniff_table(first)
    if sniffed is None:
        raise SurveyFileError(f"{path}: no time and flux columns in its header ({first[:80]!r}); known layouts: "
                              f"{'; '.join(LAYOUTS)}")
    delimiter, names = sniffed
    flux_name = _flux_column(path, names, config)
    time_name = _pick(names, TIME_COLUMNS)
    error_name = _error_column(names, flux_name)
    quality_name = _pick(names, QUALITY_COLUMNS)
    wanted = [n for n in (time_name, flux_name, error_name, quality_name) if n]
    try:
        table = pd.read_csv(path, sep=delimiter, comment="#", usecols=wanted, engine="c" if delimiter != r"\s+"
                            else "python", skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise SurveyFileError(f"{path}: cannot read it as a table ({str(error).splitlines()[0][:120]}); "
                              "fix the file or remove it") from None
    columns = {}
    for name in wanted:
        values = pd.to_numeric(table[name], errors="coerce")
        bad = values.isna() & table[name].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise SurveyFileError(f"{path}: column {name}, data row {row + 1}: {str(table[name].iloc[row])[:40]!r} is "
                                  "not a number; fix or remove that row")
        columns[name] = values.to_numpy(np.float64)
    quality = None
    if quality_name:
        quality = np.nan_to_num(columns[quality_name], nan=0.0).astype(np.int64)
    star = star_from_name(path.name)
    # The table says nothing of its mission; a target ID in the name does (for the quality bits).
    mission = {"TIC": "TESS", "EPIC": "K2", "KIC": "Kepler"}.get(star.split(" ")[0], "")
    time, flux, error, flagged = _clean(path, columns[time_name], columns[flux_name],
                                        columns.get(error_name) if error_name else None, quality, mission, config)
    return SurveyCurve(time=time, flux=flux, flux_err=error, star=star, mission=mission,
                       segment="", layout="time-series table", flux_column=flux_name, flagged=flagged)


def first_line(path: Path) -> str:
    """The first line of a text file that is neither blank nor a ``#`` comment ("" if none)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            for line in handle:
                if line.strip() and not line.lstrip().startswith("#"):
                    return line.rstrip("\r\n")
    except OSError as error:
        raise SurveyFileError(f"{path}: cannot read it ({error.strerror}); check the file") from None
    return ""


def read_survey_file(path: Path, config: PreprocessingConfig) -> SurveyCurve:
    """Read one star's file of either survey layout (FITS or time-series table)."""
    path = Path(path)
    return read_fits(path, config) if is_fits(path) else read_time_series_table(path, config)


def survey_star(path: Path) -> str:
    """The target of a one-star file without reading its data: from the name, else the FITS header."""
    path = Path(path)
    star = star_from_name(path.name)
    if normalise_star(star) is None and is_fits(path):
        from astropy.io import fits

        try:
            return _fits_star(path, fits.getheader(path, 0))
        except (OSError, ValueError, IndexError):
            return star  # reading the file says what is wrong with it
    return star

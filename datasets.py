"""Stages [1/7] and [2/7]: find the light-curve files and load them into windows on the model's grid.

Two kinds of file, told apart by their content (``file_layout``):

Kaggle wide CSV ("Exoplanet Hunting in Deep Space"): a header line, a ``LABEL`` column and flux
columns ``FLUX.1 ... FLUX.N``, comma-separated, one star per row. Labels are 2 = planet host,
1 = not (Kaggle); a file may instead use 1 = host, 0 = not, recognised by the presence of a 0.
A file whose labels are all 1 is read as Kaggle's (all non-hosts). Other columns are ignored
(and named once). The rows carry no time: their values are ``row_cadence_minutes`` apart
(29.4 min, Kepler long cadence, by default) and are averaged by time onto the grid, never
stretched; missing cells inside a row are interpolated.

One-star survey files (``survey_files``): Kepler, K2 and TESS FITS, high-level FITS products,
lightkurve's CSV and any CSV/TSV with time and flux columns. Their labels come from a labels
table (``labels_table``). Flagged cadences are dropped, the rest averaged onto the grid (flux
errors weight the average); empty grid points stay NaN for preprocessing to leave out.

A curve longer than one window (``sequence_length`` grid points, about 65 days) becomes
several (``preprocessing.window_starts``); a shorter one is one window padded with NaN after
its end. Every window keeps its star, so that the split keeps a star's windows together and
prediction combines them. Flux may be in any unit and offset: preprocessing removes both.

Every problem with a file raises ``DataError`` with a one-line message naming the file (and the
line and column where it applies) and what to do; nothing is written before all files loaded.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import TrainerError
from preprocessing import PreprocessingConfig, bin_onto_grid, cut_windows, fill_missing
from survey_files import (FITS_SUFFIXES, LAYOUTS, SurveyFileError, first_line, is_fits, read_survey_file,
                          sniff_table, star_from_name)
from synthetic_data import TRUTH_SUFFIX

log = logging.getLogger(__name__)

FLUX_COLUMN = re.compile(r"^FLUX\.(\d+)$", re.IGNORECASE)
_SNIFF_BYTES = 1 << 16
_MAX_HEADER_BYTES = 1 << 24


class DataError(TrainerError):
    """A data file (or the data set as a whole) cannot be used as it is."""


TABLE_SUFFIXES = (".csv", ".tsv")
KAGGLE, SURVEY = "kaggle", "survey"


@dataclass(frozen=True)
class DataFile:
    """A discovered light-curve file: where it is, its layout and the identity used to tell if it changed."""

    path: Path
    name: str        # path relative to the data folder, with forward slashes
    size: int
    mtime_ns: int
    layout: str = KAGGLE   # KAGGLE (many stars, labelled rows) or SURVEY (one star per file)

    def identity(self) -> dict:
        return {"name": self.name, "size": self.size, "mtime_ns": self.mtime_ns}


@dataclass
class LoadedCurves:
    """All windows of all files, on the model's grid (one row per window)."""

    flux: np.ndarray               # [rows, sequence_length] float32 (or a RowFile); NaN only where a survey file has no data
    label: np.ndarray              # [rows] int8: 1 = planet host, 0 = not, -1 = unlabelled
    source: np.ndarray             # [rows] int32 index into ``files``
    line: np.ndarray               # [rows] int64 line in its file (header = 1); window number for one-star files
    star: np.ndarray | None = None  # [rows] int64: windows of one star share it (split and prediction group by it)
    star_names: list[str] = field(default_factory=list)  # survey files' stars, by number: -1 is the first
    files: list[str] = field(default_factory=list)
    report: list[dict] = field(default_factory=list)  # per file: rows, filled, dropped, length


def file_layout(path: Path) -> str:
    """SURVEY for a FITS file or a table with time and flux columns, else KAGGLE (checked on loading)."""
    if is_fits(path):
        return SURVEY
    try:
        first = first_line(path)
    except SurveyFileError:
        return KAGGLE  # loading says what is wrong
    if re.search(r"(?i)(^|[,\s\"])(label|flux\.\d+)([,\s\"]|$)", first):
        return KAGGLE
    return SURVEY if sniff_table(first.strip("\r\n")) else KAGGLE


def _supported(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(TABLE_SUFFIXES) or lower.endswith(FITS_SUFFIXES)


def discover_files(data_dir: Path, exclude: Path | None = None) -> tuple[list[DataFile], int]:
    """Every light-curve file under ``data_dir`` (``*.csv``, ``*.tsv``, ``*.fits``, ``*.fits.gz``,
    ...), recursively, sorted by relative path, each with its layout.

    Hidden files and folders (name starting with ".") and files of other types are skipped, as
    is ``exclude`` (the labels table, which may sit beside the files it labels).

    Returns:
        (files, number of skipped files).
    """
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"{data_dir}: is a file, not a folder; give --data-dir a folder of light-curve files")
    excluded = Path(exclude).resolve() if exclude is not None else None
    found, skipped = [], 0
    for root, folders, names in os.walk(data_dir):
        for hidden in (f for f in folders if f.startswith(".")):
            skipped += sum(len(files) for _, _, files in os.walk(Path(root) / hidden))
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in names:
            path = Path(root) / name
            if excluded is not None and path.resolve() == excluded:
                continue
            if name.startswith(".") or not _supported(name):
                # The built-in data's truth beside its CSV is expected, not a skipped file.
                truth = name.endswith(TRUTH_SUFFIX) and (Path(root) / f"{name[:-len(TRUTH_SUFFIX)]}.csv").exists()
                skipped += not truth
                continue
            try:
                stat = path.stat()
            except OSError as error:
                raise DataError(f"{path}: cannot read its details ({error.strerror}); check the file") from None
            found.append(DataFile(path=path, name=path.relative_to(data_dir).as_posix(),
                                  size=stat.st_size, mtime_ns=stat.st_mtime_ns, layout=file_layout(path)))
    return sorted(found, key=lambda f: f.name), skipped


def find_datasets(data_dir: Path, known_rows: dict, labels_file: Path | None = None) -> list[DataFile]:
    """Stage [1/7]: the light-curve files under ``data_dir``; discovers, reads nothing but headers.

    Args:
        data_dir: folder searched recursively.
        known_rows: row counts by file identity from the cache, to avoid rereading files.
        labels_file: the labels table, not a light-curve file even where it lies among them.

    Returns:
        The files, in discovery order (none if there are none); each is listed in the log with
        its layout, row count and size.
    """
    files, skipped = discover_files(data_dir, labels_file)
    rows = {}
    for data_file in files:
        key = tuple(sorted(data_file.identity().items()))
        if data_file.layout == SURVEY:
            rows[data_file.name] = 1
            log.info("  %-40s %8s %10.1f MB  %s", data_file.name, "1 star", data_file.size / 1e6,
                     star_from_name(data_file.name))
            continue
        rows[data_file.name] = known_rows.get(key) if key in known_rows else count_data_rows(data_file.path)
        log.info("  %-40s %8d rows %10.1f MB", data_file.name, rows[data_file.name], data_file.size / 1e6)
    if files:
        survey = sum(f.layout == SURVEY for f in files)
        kinds = ([f"{sum(rows[f.name] for f in files if f.layout == KAGGLE)} rows"] if survey < len(files) else []) + \
            ([f"{survey} one-star survey file{'s' if survey != 1 else ''}"] if survey else [])
        log.info("Found %d light-curve file%s in %s (%s)%s", len(files), "" if len(files) == 1 else "s", data_dir,
                 ", ".join(kinds), f"; skipped {skipped} hidden or other file{'s' if skipped != 1 else ''}"
                 if skipped else "")
    return files


def generate_built_in(data_dir: Path, synthetic, seed: int) -> list[DataFile]:
    """Write the built-in synthetic Kepler-like data set into ``data_dir`` and return its files."""
    from synthetic_data import write_synthetic_dataset

    log.info("No light-curve files in %s - generating the built-in synthetic Kepler-like data set "
             "(%d curves, %.0f%% planet hosts, seed %d).", data_dir, synthetic.rows,
             100 * synthetic.positive_fraction, seed)
    log.info("  To train on your own light curves, put them in %s (CSV, FITS; see README, 'Your data') "
             "and remove %s, or point --data-dir at them.", data_dir, Path(data_dir) / "synthetic")
    started = time.perf_counter()
    written = write_synthetic_dataset(Path(data_dir), synthetic, seed)
    log.info("  Generated %d curves in %d file%s in %.1f s", synthetic.rows, len(written),
             "" if len(written) == 1 else "s", time.perf_counter() - started)
    return find_datasets(data_dir, {})


def count_data_rows(path: Path) -> int:
    """Data lines of a CSV (lines after the header), by counting line ends in 4 MB blocks.

    ``\\n``, ``\\r\\n`` and a lone ``\\r`` each end a line, as in ``find_bad_line``.
    """
    ends, last = 0, b"\n"
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 22):
                ends += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
                if last == b"\r" and block[:1] == b"\n":
                    ends -= 1  # a \r\n split across two blocks
                last = block[-1:]
    except OSError as error:
        raise _unreadable(path, error) from None
    lines = ends + (last not in (b"\n", b"\r"))
    return max(lines - 1, 0)


def _identity(path: Path) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError as error:
        raise _unreadable(path, error) from None
    return stat.st_size, stat.st_mtime_ns


def _unchanged_since_found(path: Path, found: "DataFile | None") -> tuple[int, int]:
    """The file's (size, mtime); DataError if it is no longer the file stage 1 found."""
    now = _identity(path)
    if found is not None and now != (found.size, found.mtime_ns):
        raise DataError(f"{path}: changed after it was found ({found.size:,} -> {now[0]:,} bytes); "
                        "rerun once whatever writes it has finished")
    return now


def _unreadable(path: Path, error: OSError) -> DataError:
    if isinstance(error, FileNotFoundError):
        return DataError(f"{path}: the file disappeared while loading; put it back or rerun")
    if isinstance(error, PermissionError):
        return DataError(f"{path}: permission denied; make it readable (chmod +r) or move it out of the data folder")
    return DataError(f"{path}: cannot read it ({error.strerror or error}); check the file or remove it")


@dataclass(frozen=True)
class _Header:
    label: str | None            # name of the label column as written
    flux: list[str]              # flux columns in FLUX.k order
    ignored: list[str]


def read_header(path: Path, require_labels: bool = True) -> _Header:
    """Check the first line of a CSV and find its label and flux columns."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            handle.seek(0)
            first_line = handle.readline(_MAX_HEADER_BYTES)
            after_header = handle.read(_SNIFF_BYTES)
    except OSError as error:
        raise _unreadable(path, error) from None
    if not head.strip():
        raise DataError(f"{path}: the file is empty; remove it or fill it with light curves (LABEL,FLUX.1,...)")
    if b"\x00" in head:
        raise DataError(f"{path}: not a text CSV file (binary content); remove it from the data folder")
    # A file whose lines end in a lone \r reads as one line: the header ends at the first line end.
    line_end = re.search(rb"\r\n|\n|\r", first_line)
    if line_end:
        first_line, after_header = first_line[:line_end.start()], first_line[line_end.end():] + after_header
    if not after_header.strip() and len(first_line) < _MAX_HEADER_BYTES:
        # Said here, before Arrow's reader sees the file: on a header alone it has aborted the
        # whole process under load (apache/arrow#34314).
        raise DataError(f"{path}: has a header but no data rows; add light curves or remove the file")
    try:
        text = first_line.decode("utf-8-sig").strip("\r\n")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV file; save it as CSV (UTF-8) or remove it") from None
    raw_columns = next(csv.reader([text]))
    columns = [c.strip() for c in raw_columns]
    if len(columns) == 1:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'"), (" ", "spaces")):
            if delimiter in text:
                raise DataError(f"{path}: columns are separated by {name}, not commas; save it comma-separated")
    duplicates = sorted(name for name, count in Counter(columns).items() if count > 1)
    if duplicates:
        raise DataError(f"{path}: duplicate column names {', '.join(duplicates[:5])} in the header; "
                        "give every column a unique name")
    # Names as written (Arrow selects by them), matched after stripping spaces.
    labels = [raw for raw, name in zip(raw_columns, columns) if name.upper() == "LABEL"]
    numbered = sorted((int(m.group(1)), raw) for raw, name in zip(raw_columns, columns)
                      if (m := FLUX_COLUMN.match(name)))
    if not labels and not numbered:
        raise DataError(f"{path}: not a light-curve layout this reads (header {', '.join(columns[:3])}, ...); "
                        f"known layouts: {'; '.join(LAYOUTS)}")
    if require_labels and not labels:
        raise DataError(f"{path}: no LABEL column in the header (found {', '.join(columns[:3])}, ...); "
                        "add a LABEL column: 2 = planet host, 1 = not")
    if not numbered:
        raise DataError(f"{path}: no flux columns named FLUX.1 ... FLUX.N in the header; "
                        "name the flux columns FLUX.1, FLUX.2, ...")
    flux = [raw for _, raw in numbered]
    ignored = [name for raw, name in zip(raw_columns, columns) if raw not in flux and raw not in labels]
    return _Header(label=labels[0] if labels else None, flux=flux, ignored=ignored)


# Cells read as missing (filled later) rather than as errors, as Arrow's reader treats them.
_MISSING_CELLS = {"", "nan", "na", "n/a", "null", "inf", "-inf", "+inf", "infinity", "-infinity"}


def find_bad_line(path: Path, header: _Header) -> DataError | None:
    """The first line of a CSV that cannot be read as a row of numbers, as a DataError naming it.

    The slow path, run only after the fast reader failed: one pass in Python over the lines as
    an editor counts them (``\\n``, ``\\r\\n`` and ``\\r`` all end a line; blank lines are
    skipped, as the reader skips them). It catches what the reader reports without a line
    number: NUL bytes, text that is not UTF-8, overlong or ragged lines, cells that are not
    numbers. None if every line reads.
    """
    with open(path, encoding="utf-8", errors="surrogateescape", newline=None) as handle:
        names = next(csv.reader([handle.readline().lstrip("\ufeff").rstrip("\n")]), [])
        wanted = {name: index for index, name in enumerate(names)}
        columns = [(wanted[name], name.strip()) for name in ([header.label] if header.label else []) + header.flux
                   if name in wanted]
        for number, line in enumerate(handle, start=2):
            line = line.rstrip("\n")
            if "\x00" in line:
                return DataError(f"{path}: line {number} contains NUL bytes (binary data); "
                                 "fix or remove that line")
            if any("\udc80" <= char <= "\udcff" for char in line):
                return DataError(f"{path}: line {number} is not UTF-8 text; save the file as CSV (UTF-8) "
                                 "or remove that line")
            if not line.strip():
                continue
            try:
                fields = next(csv.reader([line]))
            except csv.Error:
                return DataError(f"{path}: line {number} ({len(line):,} characters) is not a CSV row "
                                 "(a field is too long or badly quoted); fix or remove that line")
            if len(fields) != len(names):
                return DataError(f"{path}: line {number} has {len(fields)} fields but the header has {len(names)} "
                                 f"({len(line):,} characters on that line); fix or remove that line")
            for index, name in columns:
                cell = fields[index].strip()
                if cell.lower() in _MISSING_CELLS:
                    continue
                try:
                    float(cell)
                except ValueError:
                    return DataError(f"{path}: line {number}, column {name}: {cell[:40]!r} is not a number; "
                                     "fix or remove that row")
    return None


def _read_batches(path: Path, header: _Header):
    """The label and flux columns, parsed by Arrow's CSV reader a block (16 MB) of rows at a time.

    Yields RecordBatches, so a file of any size is read in bounded memory. Arrow's own messages
    never reach the user: on any failure the file is read again line by line to name the line at
    fault (``find_bad_line``).
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    bad_rows = []

    def on_invalid_row(row):
        bad_rows.append(row)
        return "skip"

    columns = ([header.label] if header.label else []) + header.flux
    types = {c: pa.float32() for c in header.flux}
    if header.label:
        types[header.label] = pa.float64()
    failed = False
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=1 << 24),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pa_csv.ConvertOptions(include_columns=columns, column_types=types,
                                                  strings_can_be_null=True))
        for batch in reader:
            if bad_rows:
                break
            yield batch
    except OSError as error:
        raise _unreadable(path, error) from None
    except pa.ArrowException:
        failed = True
    if failed or bad_rows:
        try:
            problem = find_bad_line(path, header)
        except OSError as error:
            raise _unreadable(path, error) from None
        raise problem or DataError(
            f"{path}: cannot be read as CSV, yet every line reads on its own: it may have changed while it was "
            "read; rerun once it is complete, or save it again as comma-separated text") from None


def _labels_to_host(path: Path, raw: np.ndarray) -> np.ndarray:
    """Map a file's LABEL values to 1 = planet host, 0 = not (see the module docstring)."""
    missing = ~np.isfinite(raw)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(f"{path}: line {row + 2}: LABEL is empty; give every row a label (2 = planet host, 1 = not)")
    allowed = np.isin(raw, (0.0, 1.0, 2.0))
    if not allowed.all():
        row = int(np.flatnonzero(~allowed)[0])
        raise DataError(f"{path}: line {row + 2}: LABEL {raw[row]:g} is not allowed; "
                        "use 2 = planet host, 1 = not (or 1 = host, 0 = not)")
    has_zero, has_two = (raw == 0).any(), (raw == 2).any()
    if has_zero and has_two:
        row = int(np.flatnonzero(raw == 0)[0])
        raise DataError(f"{path}: line {row + 2}: LABEL 0 in a file that also uses 2; use one convention "
                        "per file: 2/1 (Kaggle) or 1/0")
    return (raw == 1).astype(np.int8) if has_zero else (raw == 2).astype(np.int8)


@dataclass
class FileWindows:
    """One file's windows on the model's grid."""

    flux: np.ndarray          # [windows, sequence_length] float32, NaN where a survey file has no data
    label: np.ndarray         # [windows] int8 (-1: unlabelled)
    line: np.ndarray          # [windows] line of the row (Kaggle) or window number from 1 (survey)
    row: np.ndarray           # [windows] the file's row (Kaggle) or 0 (survey): windows of one star share it
    report: dict
    star: str = ""            # survey files: the target ("KIC 10666592")
    mission: str = ""
    segment: str = ""         # "Q2", "C5", "S1"
    start_day: np.ndarray | None = None   # survey files: time of each window's first grid point
    observed: np.ndarray | None = None    # survey files: fraction of each window's span with data


def rows_onto_grid(flux: np.ndarray, config: PreprocessingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Kaggle-layout rows (values ``row_cadence_minutes`` apart) averaged by time onto the grid, cut into windows.

    A row of ``sequence_length`` values at the grid's cadence is returned as it is. Otherwise
    each value goes to the grid point nearest its time, values sharing a point are averaged,
    points without a value are NaN, and a row longer than a window gives several windows.

    Returns:
        (windows [rows * windows_per_row, sequence_length], the row of each window).
    """
    rows, n = flux.shape
    length = config.sequence_length
    ratio = config.row_cadence_minutes / config.grid_cadence_minutes
    if n == length and ratio == 1.0:
        return flux, np.arange(rows)
    index = np.floor(np.arange(n) * ratio + 0.5).astype(np.int64)
    first = np.flatnonzero(np.r_[True, np.diff(index) > 0])
    counts = np.diff(np.r_[first, n])
    grid = np.full((rows, int(index[-1]) + 1), np.nan, dtype=np.float32)
    grid[:, index[first]] = np.add.reduceat(flux.astype(np.float64), first, axis=1) / counts
    windows, starts = cut_windows(grid, length)
    return windows.reshape(rows * len(starts), length), np.repeat(np.arange(rows), len(starts))


def load_file(path: Path, config: PreprocessingConfig, require_labels: bool = True,
              found: DataFile | None = None, sink=None) -> FileWindows:
    """Load one Kaggle-layout CSV into windows on the grid (see the module docstring).

    Read a block of rows at a time (``_read_batches``); ``sink(windows)``, when given, receives
    each block's windows (float32 [windows, sequence_length]) as they are made and the returned
    FileWindows has no ``flux``, so a file of any size loads in bounded memory.
    ``found``: the file as stage 1 found it; a file that changed since, or while it is read, is
    an error (the cache would record contents it was not made from).
    """
    before = _unchanged_since_found(path, found)
    header = read_header(path, require_labels)
    raw_labels, keeps, window_rows, kept_windows = [], [], [], []
    rows = filled = rows_with_gaps = 0
    for batch in _read_batches(path, header):
        flux = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in header.flux])
        flux = np.ascontiguousarray(flux, dtype=np.float32)
        if header.label:
            raw_labels.append(batch.column(header.label).to_numpy(zero_copy_only=False).astype(np.float64))
        keep = (~np.isfinite(flux)).mean(axis=1) <= config.max_missing_fraction
        flux, missing = fill_missing(flux[keep])
        filled += int(missing.sum())
        rows_with_gaps += int((missing > 0).sum())
        windows, row = rows_onto_grid(flux, config)
        window_rows.append(rows + np.flatnonzero(keep)[row])
        keeps.append(keep)
        rows += batch.num_rows
        if sink is None:
            kept_windows.append(windows)
        else:
            sink(windows)
    after = _identity(path)
    if after != before:
        raise DataError(f"{path}: changed while it was read ({before[0]:,} -> {after[0]:,} bytes; "
                        f"{rows} rows, to line {rows + 1}, were read); rerun once whatever "
                        "writes it has finished")
    if rows == 0:
        raise DataError(f"{path}: has a header but no data rows; add light curves or remove the file")
    keep = np.concatenate(keeps)
    row = np.concatenate(window_rows).astype(np.int64)
    if header.label:
        label = _labels_to_host(path, np.concatenate(raw_labels))
    else:
        label = np.full(rows, -1, dtype=np.int8)
    report = {"file": str(path), "rows": int(rows), "length": len(header.flux), "filled_values": filled,
              "rows_with_gaps": rows_with_gaps, "dropped_rows": int((~keep).sum()), "ignored_columns": header.ignored,
              "windows": int(row.size)}
    flux = None if sink is not None else (
        np.concatenate(kept_windows) if kept_windows else np.empty((0, config.sequence_length), np.float32))
    return FileWindows(flux=flux, label=label[row], line=row + 2, row=row, report=report)


def load_survey_file(path: Path, config: PreprocessingConfig, label: int = -1,
                     found: DataFile | None = None) -> FileWindows:
    """Load a one-star survey file (``survey_files``) into windows on the grid.

    Windows whose span is more than ``max_missing_fraction`` empty (flagged cadences, gaps) are
    dropped; the padding after a curve shorter than a window does not count as missing.
    """
    _unchanged_since_found(path, found)
    try:
        curve = read_survey_file(path, config)
    except SurveyFileError as error:
        raise DataError(str(error)) from None
    binned, _ = bin_onto_grid(curve.time, curve.flux, config.grid_cadence_days, curve.flux_err)
    length = config.sequence_length
    windows, starts = cut_windows(binned[None, :], length)
    flux = windows[0]
    # The share of each window's span with data: the padding after a short curve is no gap.
    observed = np.isfinite(flux).sum(axis=1) / np.minimum(length, binned.size - np.asarray(starts))
    keep = observed >= 1.0 - config.max_missing_fraction
    report = {"file": str(path), "rows": 1, "length": int(binned.size), "windows": int(keep.sum()),
              "dropped_rows": int((~keep).sum()), "filled_values": 0, "rows_with_gaps": 0, "ignored_columns": [],
              "empty_fraction": float(1.0 - np.isfinite(binned).mean()) if binned.size else 1.0,
              "padded_points": int(max(0, length - binned.size)), "flagged": curve.flagged,
              "layout": curve.layout, "flux_column": curve.flux_column}
    count = int(keep.sum())
    return FileWindows(flux=flux[keep], label=np.full(count, label, dtype=np.int8),
                       line=np.flatnonzero(keep).astype(np.int64) + 1, row=np.zeros(count, dtype=np.int64),
                       report=report, star=curve.star, mission=curve.mission, segment=curve.segment,
                       start_day=curve.time[0] + np.asarray(starts)[keep] * config.grid_cadence_days,
                       observed=observed[keep])


def _describe_repairs(report: dict, config: PreprocessingConfig) -> str:
    notes = []
    if "layout" in report:
        notes.append(f"{report['layout']}, {report['flux_column']}")
        notes.append(f"{report['length']} grid points, {report['empty_fraction']:.0%} of them empty")
        if report["padded_points"]:
            notes.append(f"padded with {report['padded_points']} empty points to one window")
        if report["flagged"]:
            notes.append(f"{report['flagged']} flagged cadences dropped")
        if report["dropped_rows"]:
            notes.append(f"dropped {report['dropped_rows']} windows more than {config.max_missing_fraction:.0%} empty")
        return "; " + "; ".join(notes)
    if report["length"] != config.sequence_length or config.row_cadence_minutes != config.grid_cadence_minutes:
        notes.append(f"{report['length']} values {config.row_cadence_minutes:g} min apart binned onto the "
                     f"{config.grid_cadence_minutes:g}-min grid ({report['windows']} windows)")
    if report["filled_values"]:
        notes.append(f"filled {report['filled_values']} missing values in {report['rows_with_gaps']} rows")
    if report["dropped_rows"]:
        notes.append(f"dropped {report['dropped_rows']} rows more than {config.max_missing_fraction:.0%} missing")
    if report["ignored_columns"]:
        notes.append(f"ignored columns {', '.join(report['ignored_columns'][:5])}")
    return "; " + "; ".join(notes) if notes else ""


def load_light_curves(files: list[DataFile], config: PreprocessingConfig, require_labels: bool = True,
                      survey_labels: dict[str, int] | None = None, spill_to: Path | None = None,
                      check_classes: bool = True) -> LoadedCurves:
    """Load every file into windows; see the module docstring for the layouts.

    Args:
        files: from stage 1.
        config: the preprocessing settings (grid, windows, quality mask, flux column).
        require_labels: refuse data that cannot train a classifier.
        survey_labels: label (1/0) of each one-star file, by name (``labels_table.match``).
        spill_to: a scratch file for the curves, written as they load (a block of rows at a
            time), so that memory stays bounded whatever the data size; ``flux`` is then a
            ``RowFile`` reading it. None: the curves stay in memory.
        check_classes: with ``require_labels``, refuse curves of one class only (False for one
            worker's share of the files: ``shards.gather`` checks them all).

    Raises:
        DataError: naming the first bad file (and line/column), or when the labels across all
            files cannot make a classifier (one class only).
        CacheSpaceError: the disk of ``spill_to`` is full.
    """
    labels, sources, lines, stars, reports, in_memory = [], [], [], [], [], []
    star_ids: dict[str, int] = {}
    next_star = 0
    spill = open(spill_to, "wb") if spill_to is not None else None

    def keep_windows(windows: np.ndarray) -> None:
        if spill is None:
            in_memory.append(windows)
            return
        try:
            spill.write(np.ascontiguousarray(windows, dtype=np.float32).data)  # no copy to bytes
        except OSError as error:
            from data_cache import CacheSpaceError

            raise CacheSpaceError(f"cannot write the loaded curves to {spill_to} ({error.strerror}); free some space, "
                                  f"or give --checkpoint-dir a disk with room, and rerun") from None

    try:
        for index, data_file in enumerate(files):
            if data_file.layout == SURVEY:
                loaded = load_survey_file(data_file.path, config, (survey_labels or {}).get(data_file.name, -1),
                                          found=data_file)
                keep_windows(loaded.flux)
                star = np.full(loaded.label.size, star_ids.setdefault(loaded.star, -1 - len(star_ids)), np.int64)
            else:
                loaded = load_file(data_file.path, config, require_labels, found=data_file, sink=keep_windows)
                star = next_star + loaded.row  # each row is its own star (its windows share it)
                next_star += int(loaded.report["rows"])
            report = loaded.report
            report["hosts"] = int((loaded.label == 1).sum())
            labels.append(loaded.label)
            sources.append(np.full(loaded.label.shape, index, dtype=np.int32))
            lines.append(loaded.line)
            stars.append(star)
            reports.append(report)
            if data_file.layout == SURVEY:
                kind = {1: "planet host", 0: "non-host"}.get(int(loaded.label[0]) if loaded.label.size else -1,
                                                             "unlabelled")
                what = f"{loaded.star} ({' '.join(p for p in (loaded.mission, loaded.segment) if p)}, {kind}): " \
                       f"{loaded.label.size} window{'s' if loaded.label.size != 1 else ''}"
            else:
                what = f"{report['rows'] - report['dropped_rows']} curves ({report['hosts']} planet hosts)"
            log.info("  %s: %s%s", data_file.name, what, _describe_repairs(report, config))
    finally:
        if spill is not None:
            spill.close()
    label = np.concatenate(labels) if labels else np.empty(0, np.int8)
    if spill is None:
        flux = np.concatenate(in_memory) if in_memory else np.empty((0, config.sequence_length), np.float32)
    else:
        from row_store import RowFile

        flux = RowFile(spill_to, (label.size, config.sequence_length), np.float32)
    curves = LoadedCurves(
        flux=flux, label=label,
        source=np.concatenate(sources) if sources else np.empty(0, np.int32),
        line=np.concatenate(lines) if lines else np.empty(0, np.int64),
        star=np.concatenate(stars) if stars else np.empty(0, np.int64),
        star_names=list(star_ids), files=[f.name for f in files], report=reports)
    if require_labels and check_classes:
        check_both_classes(curves)
    return curves


def check_both_classes(curves: LoadedCurves) -> None:
    """Refuse curves that cannot train a classifier.

    Raises:
        DataError: no curves, or curves of one class only.
    """
    if curves.label.size == 0:
        raise DataError("no usable light curves in the data files; every row was dropped as mostly missing")
    for value, name in ((1, "planet hosts (LABEL 2)"), (0, "non-hosts (LABEL 1)")):
        if not (curves.label == value).any():
            raise DataError(f"all {curves.label.size} curves in {', '.join(curves.files[:3])} are of one "
                            f"class: no {name}; add labelled curves of both classes")


def label_survey_files(files: list[DataFile], labels_path: Path | None,
                       allow_unlabelled: bool) -> tuple[list[DataFile], dict[str, int], dict | None]:
    """Match the one-star survey files to the labels table (stage 1, before anything is read or written).

    Returns:
        (the files to load: Kaggle-layout files and labelled survey files; {survey file name:
        label}; the table's identity for the cache fingerprint, or None without a table).

    Raises:
        DataError / LabelsError: survey files without labels (unless ``allow_unlabelled``),
            labels without files, or a table that cannot be read.
    """
    from labels_table import match, read_labels
    from survey_files import survey_star

    survey = [f for f in files if f.layout == SURVEY]
    if labels_path is None:
        if survey and not allow_unlabelled:
            raise DataError(f"{len(survey)} one-star survey file(s) ({', '.join(f.name for f in survey[:3])}"
                            f"{', ...' if len(survey) > 3 else ''}) have no labels: give --labels FILE.csv "
                            "(see README, 'Your data'), or --allow-unlabelled to skip them")
        if survey:
            log.info("Skipping %d unlabelled survey file(s) (--allow-unlabelled)", len(survey))
        return [f for f in files if f.layout != SURVEY], {}, None
    table = read_labels(labels_path)
    labels, unlabelled = match(table, [(f.name, survey_star(f.path)) for f in survey], allow_unlabelled)
    if unlabelled:
        log.info("Skipping %d unlabelled survey file(s) (--allow-unlabelled): %s%s", len(unlabelled),
                 ", ".join(unlabelled[:3]), ", ..." if len(unlabelled) > 3 else "")
    log.info("Labels from %s: %d survey file(s), %d planet host(s)", labels_path, len(labels), sum(labels.values()))
    return [f for f in files if f.layout != SURVEY or f.name in labels], labels, table.identity()

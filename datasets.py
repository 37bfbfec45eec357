"""Stages [1/7] and [2/7]: find the light-curve CSV files and load them into arrays.

Accepted layout (Kaggle "Exoplanet Hunting in Deep Space"): a header line, a ``LABEL`` column
and flux columns ``FLUX.1 ... FLUX.N``, comma-separated. Labels are 2 = planet host, 1 = not
(Kaggle); a file may instead use 1 = host, 0 = not, recognised by the presence of a 0. A file
whose labels are all 1 is read as Kaggle's (all non-hosts). Other columns are ignored (and
named once). Flux may be in any unit and offset: preprocessing removes both.

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
from preprocessing import PreprocessingConfig, fill_missing, resample_to_length
from synthetic_data import TRUTH_SUFFIX

log = logging.getLogger(__name__)

FLUX_COLUMN = re.compile(r"^FLUX\.(\d+)$", re.IGNORECASE)
_SNIFF_BYTES = 1 << 16
_MAX_HEADER_BYTES = 1 << 24


class DataError(TrainerError):
    """A data file (or the data set as a whole) cannot be used as it is."""


@dataclass(frozen=True)
class DataFile:
    """A discovered CSV file: where it is and the identity used to tell if it changed."""

    path: Path
    name: str        # path relative to the data folder, with forward slashes
    size: int
    mtime_ns: int

    def identity(self) -> dict:
        return {"name": self.name, "size": self.size, "mtime_ns": self.mtime_ns}


@dataclass
class LoadedCurves:
    """All curves of all files, resampled to one length."""

    flux: np.ndarray               # [rows, sequence_length] float32, no NaN
    label: np.ndarray              # [rows] int8: 1 = planet host, 0 = not, -1 = unlabelled
    source: np.ndarray             # [rows] int32 index into ``files``
    line: np.ndarray               # [rows] int64 line number in its file (header = line 1)
    files: list[str] = field(default_factory=list)
    report: list[dict] = field(default_factory=list)  # per file: rows, filled, dropped, length


def discover_csv_files(data_dir: Path) -> tuple[list[DataFile], int]:
    """Every ``*.csv`` under ``data_dir``, recursively, sorted by relative path.

    Hidden files and folders (name starting with ".") and files of other types are skipped.

    Returns:
        (files, number of skipped files).
    """
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"{data_dir}: is a file, not a folder; give --data-dir a folder of CSV files")
    found, skipped = [], 0
    for root, folders, names in os.walk(data_dir):
        for hidden in (f for f in folders if f.startswith(".")):
            skipped += sum(len(files) for _, _, files in os.walk(Path(root) / hidden))
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in names:
            path = Path(root) / name
            if name.startswith(".") or path.suffix.lower() != ".csv":
                # The built-in data's truth beside its CSV is expected, not a skipped file.
                truth = name.endswith(TRUTH_SUFFIX) and (Path(root) / f"{name[:-len(TRUTH_SUFFIX)]}.csv").exists()
                skipped += not truth
                continue
            try:
                stat = path.stat()
            except OSError as error:
                raise DataError(f"{path}: cannot read its details ({error.strerror}); check the file") from None
            found.append(DataFile(path=path, name=path.relative_to(data_dir).as_posix(),
                                  size=stat.st_size, mtime_ns=stat.st_mtime_ns))
    return sorted(found, key=lambda f: f.name), skipped


def find_datasets(data_dir: Path, synthetic, seed: int, known_rows: dict) -> list[DataFile]:
    """Stage [1/7]: the CSV files to train on, generating the built-in data set if there are none.

    Args:
        data_dir: folder searched recursively.
        synthetic: SyntheticConfig for the built-in data set.
        seed: seed of the built-in data set.
        known_rows: row counts by file identity from the cache, to avoid rereading files.

    Returns:
        The files, in discovery order; each is listed in the log with its row count and size.
    """
    files, skipped = discover_csv_files(data_dir)
    if not files:
        from synthetic_data import write_synthetic_dataset

        log.info("No CSV files in %s - generating the built-in synthetic Kepler-like data set "
                 "(%d curves, %.0f%% planet hosts, seed %d).", data_dir, synthetic.rows,
                 100 * synthetic.positive_fraction, seed)
        log.info("  To train on your own light curves, put CSV files (LABEL, FLUX.1 ... FLUX.N) in %s "
                 "and remove %s, or point --data-dir at them.", data_dir, Path(data_dir) / "synthetic")
        started = time.perf_counter()
        written = write_synthetic_dataset(Path(data_dir), synthetic, seed)
        log.info("  Generated %d curves in %d file%s in %.1f s", synthetic.rows, len(written),
                 "" if len(written) == 1 else "s", time.perf_counter() - started)
        files, skipped = discover_csv_files(data_dir)
    rows = {}
    for data_file in files:
        key = tuple(sorted(data_file.identity().items()))
        rows[data_file.name] = known_rows.get(key) if key in known_rows else count_data_rows(data_file.path)
        log.info("  %-40s %8d rows %10.1f MB", data_file.name, rows[data_file.name], data_file.size / 1e6)
    log.info("Found %d CSV file%s in %s (%d rows)%s", len(files), "" if len(files) == 1 else "s", data_dir,
             sum(rows.values()), f"; skipped {skipped} hidden or non-CSV file{'s' if skipped != 1 else ''}"
             if skipped else "")
    return files


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
    if require_labels and not labels:
        raise DataError(f"{path}: no LABEL column in the header (found {', '.join(columns[:3])}, ...); "
                        "add a LABEL column: 2 = planet host, 1 = not")
    numbered = sorted((int(m.group(1)), raw) for raw, name in zip(raw_columns, columns)
                      if (m := FLUX_COLUMN.match(name)))
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


def _read_table(path: Path, header: _Header):
    """Parse the label and flux columns with Arrow's multithreaded CSV reader.

    Arrow's own messages never reach the user: on any failure the file is read again line by
    line to name the line at fault (``find_bad_line``).
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
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=1 << 22),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pa_csv.ConvertOptions(include_columns=columns, column_types=types,
                                                  strings_can_be_null=True))
    except OSError as error:
        raise _unreadable(path, error) from None
    except pa.ArrowException:
        table = None
    if table is None or bad_rows:
        try:
            problem = find_bad_line(path, header)
        except OSError as error:
            raise _unreadable(path, error) from None
        raise problem or DataError(
            f"{path}: cannot be read as CSV, yet every line reads on its own: it may have changed while it was "
            "read; rerun once it is complete, or save it again as comma-separated text") from None
    return table


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


def load_file(path: Path, config: PreprocessingConfig, require_labels: bool = True, found: DataFile | None = None):
    """Load one CSV: returns (flux [rows, sequence_length] float32, host label, line numbers, report).

    ``found``: the file as stage 1 found it; a file that changed since, or while it is read, is
    an error (the cache would record contents it was not made from).
    """
    before = _identity(path)
    if found is not None and before != (found.size, found.mtime_ns):
        raise DataError(f"{path}: changed after it was found ({found.size:,} -> {before[0]:,} bytes); "
                        "rerun once whatever writes it has finished")
    header = read_header(path, require_labels)
    table = _read_table(path, header)
    after = _identity(path)
    if after != before:
        raise DataError(f"{path}: changed while it was read ({before[0]:,} -> {after[0]:,} bytes; "
                        f"{table.num_rows} rows, to line {table.num_rows + 1}, were read); rerun once whatever "
                        "writes it has finished")
    if table.num_rows == 0:
        raise DataError(f"{path}: has a header but no data rows; add light curves or remove the file")
    flux = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in header.flux])
    flux = np.ascontiguousarray(flux, dtype=np.float32)
    lines = np.arange(table.num_rows, dtype=np.int64) + 2
    if header.label:
        label = _labels_to_host(path, table.column(header.label).to_numpy(zero_copy_only=False).astype(np.float64))
    else:
        label = np.full(table.num_rows, -1, dtype=np.int8)
    missing_fraction = (~np.isfinite(flux)).mean(axis=1)
    keep = missing_fraction <= config.max_missing_fraction
    flux, missing = fill_missing(flux[keep])
    report = {"file": str(path), "rows": int(table.num_rows), "length": len(header.flux),
              "filled_values": int(missing.sum()), "rows_with_gaps": int((missing > 0).sum()),
              "dropped_rows": int((~keep).sum()), "ignored_columns": header.ignored}
    return resample_to_length(flux, config.sequence_length), label[keep], lines[keep], report


def _describe_repairs(report: dict, config: PreprocessingConfig) -> str:
    notes = []
    if report["length"] != config.sequence_length:
        notes.append(f"resampled {report['length']} -> {config.sequence_length} points")
    if report["filled_values"]:
        notes.append(f"filled {report['filled_values']} missing values in {report['rows_with_gaps']} rows")
    if report["dropped_rows"]:
        notes.append(f"dropped {report['dropped_rows']} rows more than {config.max_missing_fraction:.0%} missing")
    if report["ignored_columns"]:
        notes.append(f"ignored columns {', '.join(report['ignored_columns'][:5])}")
    return "; " + "; ".join(notes) if notes else ""


def load_light_curves(files: list[DataFile], config: PreprocessingConfig,
                      require_labels: bool = True) -> LoadedCurves:
    """Load every file; see the module docstring for the accepted layout.

    Raises:
        DataError: naming the first bad file (and line/column), or when the labels across all
            files cannot make a classifier (one class only).
    """
    fluxes, labels, sources, lines, reports = [], [], [], [], []
    for index, data_file in enumerate(files):
        flux, label, line, report = load_file(data_file.path, config, require_labels, found=data_file)
        report["hosts"] = int((label == 1).sum())
        fluxes.append(flux)
        labels.append(label)
        sources.append(np.full(label.shape, index, dtype=np.int32))
        lines.append(line)
        reports.append(report)
        log.info("  %s: %d curves (%d planet hosts)%s", data_file.name, label.size, report["hosts"],
                 _describe_repairs(report, config))
    curves = LoadedCurves(
        flux=np.concatenate(fluxes) if fluxes else np.empty((0, config.sequence_length), np.float32),
        label=np.concatenate(labels) if labels else np.empty(0, np.int8),
        source=np.concatenate(sources) if sources else np.empty(0, np.int32),
        line=np.concatenate(lines) if lines else np.empty(0, np.int64),
        files=[f.name for f in files], report=reports)
    if require_labels:
        if curves.flux.shape[0] == 0:
            raise DataError("no usable light curves in the data files; every row was dropped as mostly missing")
        for value, name in ((1, "planet hosts (LABEL 2)"), (0, "non-hosts (LABEL 1)")):
            if not (curves.label == value).any():
                raise DataError(f"all {curves.label.size} curves in {', '.join(curves.files[:3])} are of one "
                                f"class: no {name}; add labelled curves of both classes")
    return curves

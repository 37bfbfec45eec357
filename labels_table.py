"""The labels of one-star survey files: ``--labels FILE.csv``.

A CSV with a ``label`` column (1 = planet host, 0 = not; or Kaggle's 2 = host, 1 = not, told
apart as in the Kaggle layout: a table with a 0 in it uses 1/0) and a key column per row:

    file     a file name (``kplr010666592-2009259160929_llc.fits``) or a path relative to the
             data folder: labels that one file;
    star     (or ``target``, ``kic``, ``epic``, ``tic``, ``id``) a target ID, e.g. ``KIC 10666592``,
             ``EPIC 211309989``, ``TIC 402026209``, or a text that contains one (``HAT-P-7
             (KIC 10666592)``); a bare number needs a column named ``kic``, ``epic`` or ``tic``:
             labels every file of that star.

A row with a file name is matched by it; otherwise by its target. Every file must get a label
and every label a file (``match`` lists the mismatches in one error); ``--allow-unlabelled``
skips unlabelled files instead.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from errors import TrainerError
from survey_files import normalise_star

STAR_COLUMNS = ("star", "target", "kic", "epic", "tic", "id", "target_id", "object")


class LabelsError(TrainerError):
    """The labels table cannot be read, or does not match the files."""


@dataclass(frozen=True)
class LabelsTable:
    path: Path
    by_file: dict[str, int]   # file name or relative path -> 1 host / 0 not
    by_star: dict[str, int]   # normalised target ID -> 1 / 0
    digest: str               # sha256 of the table's bytes (the cache fingerprint records it)

    def identity(self) -> dict:
        return {"name": self.path.name, "sha256": self.digest}


def read_labels(path: Path) -> LabelsTable:
    """Read a labels table; raises LabelsError naming the file, line and column at fault."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise LabelsError(f"--labels {path}: cannot read it ({error.strerror}); check the path") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelsError(f"--labels {path}: not UTF-8 text; save it as CSV (UTF-8)") from None
    rows = list(csv.reader(line for line in text.splitlines() if line.strip() and not line.startswith("#")))
    if not rows:
        raise LabelsError(f"--labels {path}: empty; give a CSV with a label column and a file or star column")
    header = [name.strip().lower() for name in rows[0]]
    if "label" not in header:
        raise LabelsError(f"--labels {path}: no 'label' column in its header ({', '.join(rows[0][:6])}); "
                          "add one: 1 = planet host, 0 = not (or 2/1)")
    label_at = header.index("label")
    file_at = header.index("file") if "file" in header else None
    star_at = next((header.index(name) for name in STAR_COLUMNS if name in header), None)
    if file_at is None and star_at is None:
        raise LabelsError(f"--labels {path}: no 'file' or 'star' column (also accepted: {', '.join(STAR_COLUMNS[1:])}); "
                          "add one naming each row's file or target ID")
    values, keys = [], []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise LabelsError(f"--labels {path}: line {number} has {len(row)} fields but the header has {len(header)}; "
                              "fix that line (quote fields that contain commas)")
        try:
            value = int(float(row[label_at]))
        except ValueError:
            value = None
        if value not in (0, 1, 2):
            raise LabelsError(f"--labels {path}: line {number}: label {row[label_at]!r} is not 0, 1 or 2; "
                              "use 1 = host, 0 = not (or 2 = host, 1 = not)")
        name = row[file_at].strip() if file_at is not None else ""
        star = None
        if not name and star_at is not None:
            cell = row[star_at].strip()
            star = normalise_star(cell)
            if star is None and cell.isdigit() and header[star_at] in ("kic", "epic", "tic"):
                star = f"{header[star_at].upper()} {int(cell)}"
            if star is None:
                raise LabelsError(f"--labels {path}: line {number}: {cell[:40]!r} names no KIC, EPIC or TIC target; "
                                  "write it as e.g. 'KIC 10666592', or give the file name in a 'file' column")
        values.append(value)
        keys.append((name, star, number))
    if 0 in values and 2 in values:
        raise LabelsError(f"--labels {path}: labels 0 and 2 in one table; use 1/0 or Kaggle's 2/1, not both")
    host = 1 if 0 in values else 2
    by_file, by_star = {}, {}
    for value, (name, star, number) in zip(values, keys):
        table, key = (by_file, name) if name else (by_star, star)
        if key in table and table[key] != int(value == host):
            raise LabelsError(f"--labels {path}: line {number}: {key} is labelled twice, differently; keep one")
        table[key] = int(value == host)
    return LabelsTable(path=path, by_file=by_file, by_star=by_star, digest=hashlib.sha256(raw).hexdigest())


def match(table: LabelsTable, files: list[tuple[str, str]], allow_unlabelled: bool,
          require_files: bool = True) -> tuple[dict[str, int], list[str]]:
    """Label each file from the table.

    Args:
        table: the labels.
        files: (name relative to the data folder, target ID) of each one-star file.
        allow_unlabelled: skip files without a label instead of refusing.
        require_files: refuse labels without a file (training); prediction scores a subset.

    Returns:
        ({file name: label}, unlabelled file names).

    Raises:
        LabelsError: listing every file without a label (unless allowed) and every label
            without a file.
    """
    labels, unlabelled, used_files, used_stars = {}, [], set(), set()
    for name, star in files:
        base = name.rsplit("/", 1)[-1]
        key = name if name in table.by_file else base if base in table.by_file else None
        if key is not None:
            labels[name] = table.by_file[key]
            used_files.add(key)
        elif star in table.by_star:
            labels[name] = table.by_star[star]
            used_stars.add(star)
        else:
            unlabelled.append(name)
    orphans = [key for key in table.by_file if key not in used_files] + \
              [key for key in table.by_star if key not in used_stars]
    problems = []
    if unlabelled and not allow_unlabelled:
        problems.append(f"{len(unlabelled)} file(s) without a label ({', '.join(unlabelled[:4])}"
                        f"{', ...' if len(unlabelled) > 4 else ''})")
    if orphans and require_files:
        problems.append(f"{len(orphans)} label(s) without a file ({', '.join(orphans[:4])}"
                        f"{', ...' if len(orphans) > 4 else ''})")
    if problems:
        raise LabelsError(f"--labels {table.path} does not match the data files: {'; '.join(problems)}; "
                          "fix the table" + (", or pass --allow-unlabelled to skip unlabelled files"
                                             if unlabelled and not allow_unlabelled else ""))
    return labels, unlabelled

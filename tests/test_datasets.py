"""Discovery and loading of CSV files, and every bad-input error (as a real subprocess)."""

import dataclasses
import os

import numpy as np
import pytest

from conftest import make_workdir, random_curves, run_trainer, write_csv
from datasets import DataError, discover_files, load_light_curves
from preprocessing import PreprocessingConfig

CONFIG = PreprocessingConfig(sequence_length=64, detrend_window=21)


def test_discovery_is_recursive_sorted_and_skips_hidden_and_other_files(tmp_path):
    labels, flux = random_curves(4, 10, 1)
    for name in ("b.csv", "a/z.csv", "a/b/c.CSV", ".hidden.csv", "notes.txt", ".git/x.csv"):
        write_csv(tmp_path / name, labels, flux)
    files, skipped = discover_files(tmp_path)
    assert [f.name for f in files] == ["a/b/c.CSV", "a/z.csv", "b.csv"]
    assert skipped == 3
    assert all(f.size == (tmp_path / f.name).stat().st_size for f in files)


def test_loading_cuts_long_rows_into_windows_and_fills_missing_values(tmp_path):
    labels, flux = random_curves(6, 64, 2)
    long_labels, long_flux = random_curves(5, 128, 1, seed=1)
    long_flux[0, 10:14] = np.nan          # filled
    long_flux[1, :100] = np.nan           # mostly missing: dropped
    long_flux[2, 5] = np.inf              # filled
    write_csv(tmp_path / "a.csv", labels, flux)
    write_csv(tmp_path / "b.csv", long_labels, long_flux)
    files, _ = discover_files(tmp_path)
    curves = load_light_curves(files, CONFIG)
    # Rows of 128 values at the grid's cadence are two windows of 64, never squeezed into one.
    assert curves.flux.shape == (6 + 4 * 2, 64) and curves.flux.dtype == np.float32
    assert np.isfinite(curves.flux).all()
    assert curves.label.tolist() == [1, 1, 0, 0, 0, 0] + [1, 1, 0, 0, 0, 0, 0, 0]  # 2 -> host (1), 1 -> not (0)
    report = {r["file"].split("/")[-1]: r for r in curves.report}
    assert report["b.csv"]["dropped_rows"] == 1 and report["b.csv"]["filled_values"] == 5
    assert report["b.csv"]["length"] == 128 and report["b.csv"]["windows"] == 8
    assert curves.line[curves.source == 1].tolist() == [2, 2, 4, 4, 5, 5, 6, 6]  # header is line 1; line 3 dropped
    np.testing.assert_array_equal(curves.flux[8], long_flux[2, :64].astype(np.float32)) if np.isfinite(
        long_flux[2, :64]).all() else None
    np.testing.assert_array_equal(curves.flux[9], long_flux[2, 64:].astype(np.float32))
    # Windows of one row share its star; every row is a star of its own.
    assert len(np.unique(curves.star)) == 6 + 4
    assert (curves.star[6::2] == curves.star[7::2]).all()


def test_rows_of_another_cadence_are_binned_by_time_and_padded(tmp_path):
    from datasets import rows_onto_grid

    config = dataclasses.replace(CONFIG, row_cadence_minutes=CONFIG.grid_cadence_minutes / 4)
    flux = np.arange(2 * 40, dtype=np.float32).reshape(2, 40)
    windows, row = rows_onto_grid(flux, config)
    # 40 values a quarter cadence apart: grid point k averages the values nearest k cadences.
    assert windows.shape == (2, 64) and row.tolist() == [0, 1]
    np.testing.assert_allclose(windows[0, :3], [np.mean([0, 1]), np.mean([2, 3, 4, 5]), np.mean([6, 7, 8, 9])])
    assert np.isfinite(windows[:, :11]).all() and np.isnan(windows[:, 11:]).all()  # padding after 10 days of data


def test_binary_labels_one_zero_are_accepted(tmp_path):
    labels, flux = random_curves(6, 64, 2)
    write_csv(tmp_path / "a.csv", np.where(labels == 2, 1, 0), flux)
    curves = load_light_curves(discover_files(tmp_path)[0], CONFIG)
    assert curves.label.tolist() == [1, 1, 0, 0, 0, 0]


def _bad_files(tmp_path):
    """name -> (writer, text the error must contain)."""
    labels, flux = random_curves(30, 40, 6)

    def csv_text(text):
        return lambda path: path.write_text(text)

    def with_cell(row, column, value):
        def write(path):
            write_csv(path, labels, flux)
            lines = path.read_text().splitlines()
            cells = lines[row].split(",")
            cells[column] = value
            lines[row] = ",".join(cells)
            path.write_text("\n".join(lines) + "\n")
        return write

    return {
        "no_label": (lambda p: write_csv(p, labels, flux, ["KIC"] + [f"FLUX.{i}" for i in range(1, 41)]),
                     "no LABEL column"),
        "bad_label": (with_cell(5, 0, "3"), "line 6: LABEL 3 is not allowed"),
        "text_flux": (with_cell(7, 12, "abc"), "line 8, column FLUX.12: 'abc' is not a number"),
        "empty": (csv_text(""), "the file is empty"),
        "header_only": (csv_text("LABEL,FLUX.1,FLUX.2\n"), "has a header but no data rows"),
        "duplicate_columns": (lambda p: write_csv(p, labels, flux, ["LABEL"] + ["FLUX.1"] * 2 + [f"FLUX.{i}" for i in range(3, 41)]),
                              "duplicate column names FLUX.1"),
        "binary": (lambda p: p.write_bytes(b"PK\x03\x04\x00\x00binary" * 50), "not a text CSV file"),
        "semicolons": (csv_text("LABEL;FLUX.1;FLUX.2\n2;1.0;2.0\n"), "separated by semicolons"),
        "ragged_row": (with_cell(9, 3, "1.0,2.0"), "line 10 has 42 fields but the header has 41"),
        "one_class": (lambda p: write_csv(p, np.ones(30, int), flux), "no planet hosts (LABEL 2)"),
        "too_few": (lambda p: write_csv(p, labels[4:], flux[4:]), "only 2 planet hosts"),
    }


@pytest.mark.parametrize("case", sorted(_bad_files(__import__("pathlib").Path("."))))
def test_bad_input_gives_one_line_error_exit_2_and_writes_no_cache(tmp_path, case):
    writer, expected = _bad_files(tmp_path)[case]
    workdir = make_workdir(tmp_path)
    bad = workdir / "data" / f"{case}.csv"
    bad.parent.mkdir(parents=True)
    writer(bad)
    result = run_trainer(workdir, "--epochs", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(error_lines) == 1 and "ERROR" not in result.stdout, result.stdout + result.stderr
    assert expected in error_lines[0]
    if case not in ("one_class", "too_few"):
        assert str(bad) in error_lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (workdir / "checkpoints" / "training_data.npz").exists()


def test_unreadable_and_vanished_files_name_the_file(tmp_path, monkeypatch):
    labels, flux = random_curves(10, 40, 3)
    path = write_csv(tmp_path / "gone.csv", labels, flux)
    files, _ = discover_files(tmp_path)
    os.remove(path)
    with pytest.raises(DataError, match="gone.csv: the file disappeared"):
        load_light_curves(files, CONFIG)
    write_csv(path, labels, flux)
    files, _ = discover_files(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", denied)  # root ignores chmod; simulate what a user sees
    with pytest.raises(DataError, match="gone.csv: permission denied"):
        load_light_curves(files, CONFIG)


def _kaggle_lines(rows: int = 12, length: int = 64, hosts: int = 3) -> list[str]:
    labels, flux = random_curves(rows, length, hosts)
    return [",".join(["LABEL"] + [f"FLUX.{i}" for i in range(1, length + 1)])] + \
        [",".join([str(label)] + [f"{v:.3f}" for v in row]) for label, row in zip(labels, flux)]


def _load_error(folder) -> str:
    with pytest.raises(DataError) as error:
        load_light_curves(discover_files(folder)[0], CONFIG)
    message = str(error.value)
    assert "\n" not in message
    for arrow_words in ("straddl", "block", "CSV parse error", "ArrowInvalid", "In CSV column"):
        assert arrow_words not in message, message
    return message


def test_a_ten_million_character_line_is_named_by_its_line_number(tmp_path):
    lines = _kaggle_lines()
    (tmp_path / "long.csv").write_text("\n".join(lines[:2] + ["x" * 10_000_000] + lines[2:]) + "\n")
    message = _load_error(tmp_path)
    assert f"{tmp_path / 'long.csv'}: line 3 " in message and "10,000,000 characters" in message


def test_nul_bytes_past_the_first_block_are_named_by_line(tmp_path):
    lines = _kaggle_lines(rows=400, length=64)
    lines[300] = lines[300][:20] + "\x00\x00\x00" + lines[300][20:]  # far past the first 64 kB sniffed
    (tmp_path / "nul.csv").write_bytes(("\n".join(lines) + "\n").encode())
    assert f"{tmp_path / 'nul.csv'}: line 301 contains NUL bytes" in _load_error(tmp_path)


def test_text_that_is_not_utf8_is_named_by_line(tmp_path):
    lines = _kaggle_lines()
    data = "\n".join(lines).encode().replace(lines[5].encode(), lines[5].encode()[:30] + b"\xff\xfe" +
                                             lines[5].encode()[32:])
    (tmp_path / "latin.csv").write_bytes(data + b"\n")
    assert f"{tmp_path / 'latin.csv'}: line 6 is not UTF-8 text" in _load_error(tmp_path)


def test_mixed_line_endings_load_and_errors_count_lines_as_an_editor_does(tmp_path):
    lines = _kaggle_lines()
    endings = ["\r\n", "\n", "\r"]
    mixed = "".join(line + endings[number % 3] for number, line in enumerate(lines))
    (tmp_path / "mixed.csv").write_bytes(mixed.encode())
    curves = load_light_curves(discover_files(tmp_path)[0], CONFIG)
    assert curves.label.size == 12 and curves.label.sum() == 3
    from datasets import count_data_rows

    assert count_data_rows(tmp_path / "mixed.csv") == 12
    cells = lines[7].split(",")
    cells[4] = "oops"
    lines[7] = ",".join(cells)
    (tmp_path / "mixed.csv").write_bytes("".join(line + endings[n % 3] for n, line in enumerate(lines)).encode())
    assert "line 8, column FLUX.4: 'oops' is not a number" in _load_error(tmp_path)


def test_a_file_that_changes_after_it_is_found_is_an_error_not_a_stale_cache(tmp_path):
    lines = _kaggle_lines()
    path = tmp_path / "growing.csv"
    path.write_text("\n".join(lines[:8]) + "\n")
    files, _ = discover_files(tmp_path)
    with open(path, "a") as handle:  # another program is still writing it
        handle.write("\n".join(lines[8:]) + "\n")
    with pytest.raises(DataError, match=r"growing.csv: changed after it was found \([\d,]+ -> [\d,]+ bytes\); rerun"):
        load_light_curves(files, CONFIG)


def test_old_mac_line_endings_alone_are_read(tmp_path):
    (tmp_path / "mac.csv").write_bytes(("\r".join(_kaggle_lines()) + "\r").encode())
    curves = load_light_curves(discover_files(tmp_path)[0], CONFIG)
    assert curves.label.size == 12 and curves.label.sum() == 3

"""Survey light-curve files: readers (real mission files and tiny ones written here), labels
tables, splitting by star, and training and prediction on them as real subprocesses."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from augmentation import SplitConfig, split_by_star
from conftest import ROOT, TINY_CONFIG, run_trainer
from datasets import SURVEY, DataError, discover_files, load_light_curves, load_survey_file
from labels_table import LabelsError, match, read_labels
from preprocessing import PreprocessingConfig
from survey_files import SurveyFileError, read_survey_file, star_from_name

REAL_FITS = ROOT.parent / "shared" / "real_fits"
CADENCE = 29.4244 / 1440
CONFIG = PreprocessingConfig()
TINY = PreprocessingConfig(**TINY_CONFIG["preprocessing"])


def write_mission_fits(path: Path, time, flux, quality=None, star: int = 10666592, mission: str = "Kepler",
                       segment: int = 2, flux_name: str = "PDCSAP_FLUX") -> Path:
    """A FITS file laid out as the Kepler/K2/TESS pipelines write their light curves."""
    time = np.asarray(time, float)
    quality = np.zeros(time.size, np.int32) if quality is None else np.asarray(quality, np.int32)
    columns = [fits.Column("TIME", "D", array=time), fits.Column("SAP_FLUX", "E", array=np.asarray(flux) * 1.01),
               fits.Column(flux_name, "E", array=flux), fits.Column(f"{flux_name}_ERR", "E", array=np.full(time.size, 5.0)),
               fits.Column("QUALITY" if mission == "TESS" else "SAP_QUALITY", "J", array=quality)]
    header = fits.Header()
    if mission == "TESS":
        header.update(TELESCOP="TESS", TICID=star, SECTOR=segment, OBJECT=f"TIC {star}")
    else:
        header.update(TELESCOP="Kepler", MISSION=mission, KEPLERID=star, OBJECT=f"{'KIC' if mission == 'Kepler' else 'EPIC'} {star}",
                      **({"QUARTER": segment} if mission == "Kepler" else {"CAMPAIGN": segment}))
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([fits.PrimaryHDU(header=header), fits.BinTableHDU.from_columns(columns, name="LIGHTCURVE")]).writeto(path)
    return path


def transit_curve(rng, points: int, host: bool, cadence: float = CADENCE, start: float = 100.0):
    time = start + np.arange(points) * cadence
    flux = 50000.0 * (1 + rng.normal(0, 2e-4, points))
    if host:
        flux[((time - start) % 1.3) < 0.12] *= 1 - 3e-3
    return time, flux


@pytest.mark.skipif(not REAL_FITS.is_dir(), reason=f"{REAL_FITS} is absent (real mission files for development)")
def test_real_mission_files_read_with_their_stars_segments_and_columns():
    expected = {  # file: (star, mission, segment, flux column, cadence in minutes)
        "kplr010666592-2009259160929_llc.fits": ("KIC 10666592", "Kepler", "Q2", "PDCSAP_FLUX", 29.4),
        "ktwo211436265-c05_llc.fits": ("EPIC 211436265", "K2", "C5", "PDCSAP_FLUX", 29.4),
        "tess2018234235059-s0002-0000000402026209-0121-s_lc.fits": ("TIC 402026209", "TESS", "S2", "PDCSAP_FLUX", 2.0),
        "hlsp_k2sc_k2_llc_210951703-c04_kepler_v2_lc.fits": ("EPIC 210951703", "K2", "C4", "flux", 29.4),
        "EPIC_211309989_mast.fits": ("EPIC 211309989", "K2", "C5", "flux", 29.4),
    }
    for name, (star, mission, segment, column, minutes) in expected.items():
        curve = read_survey_file(REAL_FITS / name, CONFIG)
        assert (curve.star, curve.mission, curve.segment, curve.flux_column) == (star, mission, segment, column), name
        assert np.median(np.diff(curve.time)) * 1440 == pytest.approx(minutes, abs=0.05), name
        assert np.isfinite(curve.flux).all() and abs(np.median(curve.flux)) < 1.0  # ppm around the median
    # HAT-P-7 b: 0.7 % transits every 2.2047 d; a Kepler quarter (89 d) is two windows of 65 d.
    loaded = load_survey_file(REAL_FITS / "kplr010666592-2009259160929_llc.fits", CONFIG)
    assert loaded.flux.shape == (2, 3197) and (loaded.observed > 0.9).all()
    assert np.nanpercentile(loaded.flux, 0.5) < -5000
    # A TESS sector (27 d) is one window: its 2-minute cadences averaged 15 to a point, padded after.
    loaded = load_survey_file(REAL_FITS / "tess2018234235059-s0002-0000000402026209-0121-s_lc.fits", CONFIG)
    assert loaded.flux.shape == (1, 3197) and loaded.report["padded_points"] > 1700
    assert np.isnan(loaded.flux[0, -1700:]).all()


def test_quality_flags_nan_and_flux_column_of_a_mission_file(tmp_path):
    rng = np.random.default_rng(0)
    time, flux = transit_curve(rng, 400, host=False)
    quality = np.zeros(400, int)
    quality[10] = 32      # desaturation: in lightkurve's default mask
    quality[11] = 1024    # sensitivity dropout: only in "hard"
    flux[12] = np.nan
    path = write_mission_fits(tmp_path / "kplr001234567-2009259160929_llc.fits", time, flux, quality, star=1234567)
    curve = read_survey_file(path, CONFIG)
    assert curve.time.size == 398 and curve.flagged == 1 and curve.star == "KIC 1234567" and curve.segment == "Q2"
    assert read_survey_file(path, dataclasses.replace(CONFIG, quality_bitmask="hard")).time.size == 397
    assert read_survey_file(path, dataclasses.replace(CONFIG, quality_bitmask="none")).time.size == 399
    assert read_survey_file(path, dataclasses.replace(CONFIG, flux_column="sap_flux")).flux_column == "SAP_FLUX"
    with pytest.raises(SurveyFileError, match=r"kplr001234567.*no flux column 'KSPSAP_FLUX'.*--flux-column"):
        read_survey_file(path, dataclasses.replace(CONFIG, flux_column="KSPSAP_FLUX"))
    # The flux errors weight the averaging: a point with a huge error counts for nothing.
    assert load_survey_file(path, CONFIG).report["flagged"] == 1


def test_a_qlp_like_product_reads_its_detrended_flux(tmp_path):
    rng = np.random.default_rng(5)
    time, flux = transit_curve(rng, 200, host=False, cadence=10 / 1440)
    path = write_mission_fits(tmp_path / "hlsp_qlp_tess_ffi_s0010-0000000123456789_tess_v01_llc.fits", time, flux,
                              star=123456789, mission="TESS", segment=10, flux_name="KSPSAP_FLUX")
    curve = read_survey_file(path, CONFIG)
    assert (curve.flux_column, curve.star, curve.mission, curve.segment) == ("KSPSAP_FLUX", "TIC 123456789", "TESS", "S10")
    assert curve.layout.startswith("high-level FITS")


def test_unreadable_fits_files_get_one_line_naming_them(tmp_path):
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"SIMPLE  =                    T" + bytes(range(256)) * 20)
    no_table = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(no_table)
    for path, text in ((broken, "cannot be read as FITS"), (no_table, "without a table of time and flux")):
        with pytest.raises(SurveyFileError) as error:
            read_survey_file(path, CONFIG)
        assert str(path) in str(error.value) and text in str(error.value) and "\n" not in str(error.value)


def test_lightkurve_csv_and_tsv_tables_are_read(tmp_path):
    rng = np.random.default_rng(1)
    time, flux = transit_curve(rng, 300, host=True, cadence=2 / 1440)
    lines = ["# written by lightkurve", "time,flux,flux_err,quality,centroid_col"]
    lines += [f"{t},{f},{3.0},{q},1.0" for t, f, q in zip(time, flux, [0] * 299 + [128])]
    (tmp_path / "tic_402026209.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "star b.tsv").write_text("TIME\tSAP_FLUX\n" + "\n".join(f"{t}\t{f}" for t, f in zip(time, flux)))
    curve = read_survey_file(tmp_path / "tic_402026209.csv", CONFIG)
    assert curve.star == "TIC 402026209" and curve.time.size == 299 and curve.flagged == 1
    assert curve.flux_err is not None and curve.flux.min() < -2000  # 0.3 % transits in ppm
    other = read_survey_file(tmp_path / "star b.tsv", CONFIG)
    assert other.star == "star b" and other.flux_column == "SAP_FLUX" and other.time.size == 300
    files, _ = discover_files(tmp_path)
    assert [f.layout for f in files] == [SURVEY, SURVEY]
    # Targets named by mission file names, as the archive names them.
    assert [star_from_name(n) for n in ("ktwo211436265-c05_llc.fits", "hlsp_k2sc_k2_llc_210951703-c04_kepler_v2_lc.fits",
                                        "tess2019032160000-s0008-0000000413248763-0136-s_lc.fits", "EPIC_211309989_mast.fits",
                                        "my star.csv")] == \
        ["EPIC 211436265", "EPIC 210951703", "TIC 413248763", "EPIC 211309989", "my star"]
    (tmp_path / "other.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError) as error:
        load_light_curves(discover_files(tmp_path)[0][:1], CONFIG)
    assert "other.csv: not a light-curve layout" in str(error.value) and "lightkurve's to_csv" in str(error.value)
    (tmp_path / "other.csv").unlink()
    (tmp_path / "bad.csv").write_text("time,flux\n1.0,2.0\n1.1,abc\n")
    with pytest.raises(SurveyFileError, match=r"bad.csv: column flux, data row 2: 'abc' is not a number"):
        read_survey_file(tmp_path / "bad.csv", CONFIG)


def test_labels_table_matches_files_and_stars_and_lists_mismatches(tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("file,star,label\nkplr010666592-2009259160929_llc.fits,,2\n,TIC 402026209,2\n"
                     ",HAT-P-70 (TIC 399870368),1\n")
    labels = read_labels(table)
    files = [("a/kplr010666592-2009259160929_llc.fits", "KIC 10666592"), ("s2.fits", "TIC 402026209"),
             ("s3.fits", "TIC 399870368")]
    assert match(labels, files, allow_unlabelled=False)[0] == {files[0][0]: 1, "s2.fits": 1, "s3.fits": 0}
    with pytest.raises(LabelsError) as error:
        match(labels, files[:2] + [("other.fits", "KIC 1")], allow_unlabelled=False)
    message = str(error.value)
    assert "1 file(s) without a label (other.fits)" in message and "1 label(s) without a file (TIC 399870368)" in message
    assert "--allow-unlabelled" in message
    # --allow-unlabelled skips files without a label; a label without a file is still an error.
    assert match(labels, files + [("other.fits", "KIC 1")], allow_unlabelled=True)[1] == ["other.fits"]
    with pytest.raises(LabelsError, match="1 label"):
        match(labels, files[:2], allow_unlabelled=True)
    table.write_text("file,label\na.fits,1\nb.fits,0\n")
    assert read_labels(table).by_file == {"a.fits": 1, "b.fits": 0}  # a table with a 0 uses 1/0
    table.write_text("file,label\na.fits,3\n")
    with pytest.raises(LabelsError, match=r"line 2: label '3' is not 0, 1 or 2"):
        read_labels(table)


def test_windows_of_one_star_never_fall_into_two_splits():
    rng = np.random.default_rng(2)
    star = np.repeat(np.arange(60), rng.integers(1, 5, 60))  # 1-4 windows a star
    label = (star < 15).astype(np.int8)
    splits = split_by_star(label, star, SplitConfig(), seed=3)
    assert sorted(np.concatenate(list(splits.values()))) == list(range(star.size))
    owners = [set(star[rows]) for rows in splits.values()]
    assert not (owners[0] & owners[1]) and not (owners[0] & owners[2]) and not (owners[1] & owners[2])
    # One window a star (the Kaggle layout): the split of the rows themselves.
    from augmentation import stratified_split

    one = stratified_split(label, SplitConfig(), seed=3)
    same = split_by_star(label, np.arange(label.size), SplitConfig(), seed=3)
    assert all(np.array_equal(one[name], same[name]) for name in one)


def test_a_short_curve_is_padded_and_its_padding_stays_out_of_the_statistics(tmp_path):
    rng = np.random.default_rng(3)
    time, flux = transit_curve(rng, 60, host=False)  # 1.2 days of a 2.6-day window
    path = write_mission_fits(tmp_path / "short.fits", time, flux, star=7, mission="K2", segment=4)
    loaded = load_survey_file(path, TINY)
    assert loaded.flux.shape == (1, 128) and loaded.report["padded_points"] == 68
    assert loaded.star == "EPIC 7" and loaded.segment == "C4" and loaded.observed[0] == 1.0
    from preprocessing import preprocess

    model_input = preprocess(loaded.flux, TINY)[0, :, 0]
    assert (model_input[60:] == 0).all() and 0.5 < np.std(model_input[:60]) < 2.0  # unit noise where observed


def _survey_data(folder: Path, rng) -> Path:
    """18 stars (8 hosts) in two quarters each, as Kepler FITS, and a labels table by star."""
    rows = []
    for number in range(18):
        host = number < 8
        for quarter, start in ((2, 100.0), (3, 200.0)):
            time, flux = transit_curve(rng, 300, host, start=start)
            write_mission_fits(folder / f"kplr{number + 1:09d}-q{quarter}_llc.fits", time, flux, star=number + 1,
                               segment=quarter)
        rows.append([f"KIC {number + 1}", 2 if host else 1])
    table = folder / "labels.csv"
    with open(table, "w", newline="") as handle:
        csv.writer(handle).writerows([["star", "label"]] + rows)
    return table


def test_training_and_prediction_on_fits_files_with_a_labels_table(tmp_path, tiny_config):
    workdir = tmp_path / "run"
    table = _survey_data(workdir / "data", np.random.default_rng(4))  # the table lies among the files
    result = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1")
    assert result.returncode == 2 and "36 one-star survey file(s)" in result.stderr and "--labels" in result.stderr
    result = run_trainer(workdir, "--config", str(tiny_config), "--epochs", "1", "--labels", str(table))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Labels from" in result.stdout and "36 survey file(s), 16 planet host(s)" in result.stdout
    assert "KIC 1 (Kepler Q2, planet host): 3 windows" in result.stdout  # 6 days: windows of 2.6 d, the last at the end
    # Prediction: one row per star, its windows combined, and one row per window.
    result = run_trainer(workdir, "--predict", str(workdir / "data"), "--labels", str(table))
    assert result.returncode == 0, result.stdout + result.stderr
    with open(workdir / "results" / "predictions.csv") as handle:
        stars = list(csv.DictReader(handle))
    with open(workdir / "results" / "predictions_windows.csv") as handle:
        windows = list(csv.DictReader(handle))
    assert len(stars) == 18 and len(windows) == 36 * 3
    first = next(row for row in stars if row["star"] == "KIC 1")
    assert first["segments"] == "Q2 Q3" and first["windows"] == "6" and first["true_host"] == "1"
    assert float(first["probability"]) == max(float(w["probability"]) for w in windows if w["star"] == "KIC 1")
    assert "Metrics on the 18 labelled stars" in result.stdout
    # The cache (and so the checkpoint) records the labels table: relabelling a star is a new data set.
    import data_cache

    before = data_cache.make_fingerprint([], TINY, SplitConfig(), 42, read_labels(table).identity())
    table.write_text(table.read_text().replace("KIC 18,1", "KIC 18,2"))
    after = data_cache.make_fingerprint([], TINY, SplitConfig(), 42, read_labels(table).identity())
    assert before != after and before["labels"]["name"] == "labels.csv"

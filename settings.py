"""All settings of a run: one frozen dataclass, filled from the command line.

Each component owns its config (``PreprocessingConfig`` in preprocessing.py, ``SplitConfig`` in
augmentation.py, ...); ``Settings`` gathers them with the folders and the seed. The defaults
reproduce the design; ``--config FILE.json`` overrides any component setting by name (unknown
names are rejected), and the resolved settings are written as JSON beside the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import distribution
from augmentation import SplitConfig
from errors import TrainerError
from model import ModelConfig
from preprocessing import PreprocessingConfig
from synthetic_data import SyntheticConfig
from training import TrainingConfig


VERSION = "1.15.1"

EXAMPLES = """\
examples:
  python3 hybrid_training.py                      train on data/ (or the built-in data), or resume
  python3 hybrid_training.py --status             show progress; changes nothing
  python3 hybrid_training.py --epochs 150         train on to epoch 150 (a finished run continues)
  python3 hybrid_training.py --fresh              delete the checkpoint set and train from epoch 1
  python3 hybrid_training.py --config my.json     override settings, e.g. {"training": {"batch_size": 64}}
  python3 hybrid_training.py --predict new.csv more/   score CSV files and folders with the best model
  python3 hybrid_training.py --data-dir kepler_fits/ --labels labels.csv   train on FITS files with a labels table
  python3 hybrid_training.py --predict tess_sector/ --labels labels.csv   score survey files, with metrics
  TF_CONFIG='{"cluster": {"worker": ["a:12345", "b:12345"]}, "task": {"type": "worker", "index": 0}}' \\
    python3 hybrid_training.py --distribute multi-worker   on machine a (index 1 on b), folders shared

precedence: a flag given on the command line beats --config, which beats the default.

exit codes:
  0    done
  1    unexpected internal error (the traceback is in the log file; please report it)
  2    bad command line, setting, data file or checkpoint: the message says what to fix
  3    --distribute multi-worker: another worker stopped; rerun the job on every machine to resume
  130  interrupted by Ctrl-C (SIGINT), 143 by SIGTERM: rerun the same command to resume
"""


class SettingsError(TrainerError):
    """A command-line flag or a --config entry has a value the trainer cannot use."""


@dataclass(frozen=True)
class Paths:
    """Every file the trainer reads or writes derives from these folders."""

    data_dir: Path = Path("data")
    checkpoint_dir: Path = Path("checkpoints")
    models_dir: Path = Path("models")
    results_dir: Path = Path("results")
    log_file: Path = Path("training_full.log")

    @property
    def cache_file(self) -> Path:
        return self.checkpoint_dir / "training_data.npz"

    @property
    def preprocessor_file(self) -> Path:
        return self.models_dir / "preprocessor_hybrid.json"

    @property
    def best_model_file(self) -> Path:
        return self.models_dir / "exoplanet_cnn_lstm.keras"

    @property
    def threshold_file(self) -> Path:
        """The decision threshold chosen on the validation split, beside the model."""
        return self.models_dir / "threshold.json"

    @property
    def metrics_file(self) -> Path:
        return self.results_dir / "metrics.json"

    @property
    def predictions_file(self) -> Path:
        return self.results_dir / "predictions.csv"

    @property
    def window_predictions_file(self) -> Path:
        """One row per scored window (predictions.csv has one per star)."""
        return self.results_dir / "predictions_windows.csv"

    @property
    def completeness_file(self) -> Path:
        """Stage 7's completeness study on fresh built-in curves (its plot is beside it)."""
        return self.results_dir / "completeness.json"

    @property
    def settings_file(self) -> Path:
        """The resolved settings of the latest run (the checkpoint keeps its own fingerprint)."""
        return self.results_dir / "settings.json"


@dataclass(frozen=True)
class Settings:
    paths: Paths = field(default_factory=Paths)
    seed: int = 42
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    fresh: bool = False
    status: bool = False
    predict: tuple[Path, ...] = ()
    labels: Path | None = None       # labels table of one-star survey files
    allow_unlabelled: bool = False   # skip survey files without a label instead of refusing
    combine: str = "max"             # a star's prediction from its windows' scores: max, mean, median
    distribute: str = "none"         # tf.distribute: none, mirrored (this machine's GPUs), multi-worker (TF_CONFIG)

    def for_data(self, built_in: bool) -> Settings:
        """These settings with what depends on the run's data settled: ``training.epoch_parts``
        null is 3 on the built-in data and 1 on files of your own (``TrainingConfig.resolved``)."""
        return dataclasses.replace(self, training=self.training.resolved(built_in))

    def to_json(self) -> dict:
        """Plain JSON-able dict (paths as strings), the preprocessing as it is used (its windows resolved)."""
        return json.loads(json.dumps(dataclasses.asdict(self) | {"preprocessing": self.preprocessing.to_json()},
                                     default=str))


# Components whose fields --config may override, by the name used in the JSON file.
_COMPONENTS = ("synthetic", "preprocessing", "split", "model", "training")


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="hybrid_training.py",
        description=(
            "Train a Conv1D+LSTM network to find exoplanet transits in light curves "
            "(CSV: LABEL column, 2 = planet host, 1 = not; then FLUX.1 ... FLUX.N). "
            "Interrupt it at any time and rerun the same command to resume."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    paths = defaults.paths
    parser.add_argument("--data-dir", type=Path, default=paths.data_dir,
                        help="folder searched recursively for light curves (*.csv, *.tsv, *.fits, *.fits.gz); "
                             "when it holds none, "
                             "a built-in synthetic Kepler-like data set is generated there "
                             "(default: %(default)s)")
    parser.add_argument("--checkpoint-dir", type=Path, default=paths.checkpoint_dir,
                        help="where the per-epoch checkpoint set and the cached data split live "
                             "(default: %(default)s)")
    parser.add_argument("--models-dir", type=Path, default=paths.models_dir,
                        help="where the best model and its preprocessing settings are written "
                             "(default: %(default)s)")
    parser.add_argument("--results-dir", type=Path, default=paths.results_dir,
                        help="where plots, metrics and predictions are written (default: %(default)s)")
    parser.add_argument("--log-file", type=Path, default=paths.log_file,
                        help="log appended with everything printed (default: %(default)s)")
    # No argparse default for settings --config can also set: None means "not given", so an
    # explicit flag beats --config, which beats the default.
    parser.add_argument("--epochs", type=int,
                        help="total number of epochs to train, counted from the first "
                             f"(default: {defaults.training.epochs})")
    parser.add_argument("--batch-size", type=int,
                        help=f"training batch size (default: {defaults.training.batch_size})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed for the built-in data, the split, augmentation, initial weights and "
                             "batch order; the same seed reproduces the same run (default: %(default)s)")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--fresh", action="store_true",
                       help="delete the checkpoint set and the best model, then train from epoch 1")
    modes.add_argument("--status", action="store_true",
                       help="print training progress from the checkpoint and exit; changes nothing")
    modes.add_argument("--predict", type=Path, nargs="+", metavar="PATH",
                       help="score light-curve files (CSV, TSV, FITS; any layout, mixed) or folders of them "
                            "with the best model")
    parser.add_argument("--labels", type=Path, metavar="FILE.csv",
                        help="labels of one-star survey files (FITS, time-series CSV): a CSV with a 'label' "
                             "column (1/0 or 2/1) and a 'file' or 'star' (KIC/EPIC/TIC) column; with --predict, "
                             "for metrics")
    parser.add_argument("--allow-unlabelled", action="store_true",
                        help="skip survey files that --labels does not label (counted), instead of refusing")
    parser.add_argument("--combine", choices=("max", "mean", "median"), default=defaults.combine,
                        help="with --predict: a star's score from its windows' scores (default: %(default)s: a "
                             "transit in any window counts)")
    parser.add_argument("--flux-column", metavar="NAME",
                        help="flux column of FITS and time-series files (default: PDCSAP_FLUX where it exists, "
                             "then KSPSAP_FLUX, FLUX, DET_FLUX, SAP_FLUX)")
    parser.add_argument("--row-cadence", type=float, metavar="MINUTES",
                        help="minutes between the values of a Kaggle-layout row (default: "
                             f"{defaults.preprocessing.row_cadence_minutes:g}, Kepler long cadence; 2 for TESS "
                             "2-minute rows)")
    parser.add_argument("--distribute", choices=distribution.CHOICES, default=defaults.distribute,
                        help="train with tf.distribute: 'mirrored' on every GPU of this machine, 'multi-worker' on "
                             "the machines of TF_CONFIG, each running this same command; --batch-size is then the "
                             "global batch (default: %(default)s; see README, 'Scaling out')")
    parser.add_argument("--config", type=Path, metavar="FILE.json",
                        help="JSON object overriding component settings, e.g. "
                             '{"preprocessing": {"detrend_window": 61}}; components: '
                             + ", ".join(_COMPONENTS))
    return parser


def _type_problem(value, expected) -> str | None:
    """Why ``value`` (from JSON) does not fit the annotation ``expected``; None if it does."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        return None if any(_type_problem(value, option) is None for option in options) else \
            f"expected {' or '.join(_type_name(o) for o in options)}"
    if origin is tuple:
        arguments = typing.get_args(expected)
        if not isinstance(value, (list, tuple)):
            return f"expected a list of {_type_name(arguments[0])}"
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            arguments = (arguments[0],) * len(value)
        elif len(arguments) != len(value):
            return f"expected a list of {len(arguments)} values"
        problems = [_type_problem(item, kind) for item, kind in zip(value, arguments)]
        return next((f"item {i}: {p}" for i, p in enumerate(problems) if p), None)
    if expected is type(None):
        return None if value is None else "expected null"
    if expected is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if expected is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "expected an integer"
    if expected is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "expected a number"
        return None if math.isfinite(value) else "expected a finite number"
    if expected is str:
        return None if isinstance(value, str) else "expected a string"
    return None


def _type_name(kind) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(kind, str(kind))


def _override(config, overrides: dict, where: str):
    """Return ``config`` with fields replaced from ``overrides``, each checked for type and range.

    Raises:
        SettingsError: naming the key: unknown, of the wrong type, or out of range.
    """
    if not isinstance(overrides, dict):
        raise SettingsError(f"{where}: expected a JSON object of settings, got {overrides!r}")
    known = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    values = {}
    for name, value in overrides.items():
        if name not in known:
            raise SettingsError(f"{where}: unknown setting '{name}'; known: {', '.join(sorted(known))}")
        problem = _type_problem(value, hints[name])
        if problem:
            raise SettingsError(f"{where}: {name} = {json.dumps(value)}: {problem}; fix it in the file")
        values[name] = tuple(value) if isinstance(value, list) else value
    try:
        return dataclasses.replace(config, **values)
    except (TypeError, ValueError) as error:
        raise SettingsError(f"{where}: {error}") from None


def _read_config_file(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_bytes())
    except UnicodeDecodeError:
        raise SettingsError(f"--config {path}: not a UTF-8 text file; give a JSON file") from None
    except OSError as error:
        raise SettingsError(f"--config {path}: cannot read it ({error.strerror}); check the path") from None
    except json.JSONDecodeError as error:
        raise SettingsError(f"--config {path}: not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(data, dict):
        raise SettingsError(f"--config {path}: expected a JSON object with keys {', '.join(_COMPONENTS)}")
    for name in data:
        if name not in _COMPONENTS:
            raise SettingsError(f"--config {path}: unknown section '{name}'; known: {', '.join(_COMPONENTS)}")
    return data


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from the command line; raises SettingsError naming a bad flag or config entry."""
    args = build_parser().parse_args(argv)
    settings = Settings()
    components = {name: getattr(settings, name) for name in _COMPONENTS}
    if args.config is not None:
        for name, overrides in _read_config_file(args.config).items():
            components[name] = _override(components[name], overrides, f"--config {args.config} [{name}]")
    flags = {name: value for name, value in (("epochs", args.epochs), ("batch_size", args.batch_size))
             if value is not None}
    components["training"] = _override(components["training"], flags, "command line")
    flags = {name: value for name, value in (("flux_column", args.flux_column),
                                             ("row_cadence_minutes", args.row_cadence)) if value is not None}
    components["preprocessing"] = _override(components["preprocessing"], flags, "command line")
    if args.seed < 0:
        raise SettingsError(f"--seed {args.seed}: use a non-negative integer")
    return Settings(
        paths=Paths(data_dir=args.data_dir, checkpoint_dir=args.checkpoint_dir,
                    models_dir=args.models_dir, results_dir=args.results_dir, log_file=args.log_file),
        seed=args.seed,
        fresh=args.fresh,
        status=args.status,
        predict=tuple(args.predict or ()),
        labels=args.labels,
        allow_unlabelled=args.allow_unlabelled,
        combine=args.combine,
        distribute=args.distribute,
        **components,
    )

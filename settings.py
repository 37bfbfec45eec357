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
from dataclasses import dataclass, field
from pathlib import Path

from augmentation import SplitConfig
from errors import TrainerError
from model import ModelConfig
from preprocessing import PreprocessingConfig
from synthetic_data import SyntheticConfig
from training import TrainingConfig


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

    def to_json(self) -> dict:
        """Plain JSON-able dict (paths as strings)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


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
    )
    paths = defaults.paths
    parser.add_argument("--data-dir", type=Path, default=paths.data_dir,
                        help="folder searched recursively for *.csv light curves; when it holds none, "
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
    parser.add_argument("--epochs", type=int, default=defaults.training.epochs,
                        help="total number of epochs to train, counted from the first "
                             "(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.training.batch_size,
                        help="training batch size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed for the built-in data, the split, augmentation, initial weights and "
                             "batch order; the same seed reproduces the same run (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the checkpoint set and the best model, then train from epoch 1")
    parser.add_argument("--status", action="store_true",
                        help="print training progress from the checkpoint and exit; changes nothing")
    parser.add_argument("--predict", type=Path, nargs="+", metavar="PATH",
                        help="score CSV files or folders of CSVs with the best model")
    parser.add_argument("--config", type=Path, metavar="FILE.json",
                        help="JSON object overriding component settings, e.g. "
                             '{"preprocessing": {"detrend_window": 61}}; components: '
                             + ", ".join(_COMPONENTS))
    return parser


def _override(config, overrides: dict, where: str):
    """Return ``config`` with fields replaced from ``overrides``; unknown names are errors."""
    if not isinstance(overrides, dict):
        raise SettingsError(f"{where}: expected a JSON object of settings, got {overrides!r}")
    known = {f.name: f for f in dataclasses.fields(config)}
    for name in overrides:
        if name not in known:
            raise SettingsError(f"{where}: unknown setting '{name}'; known: {', '.join(sorted(known))}")
    try:
        return dataclasses.replace(config, **overrides)
    except (TypeError, ValueError) as error:
        raise SettingsError(f"{where}: {error}") from None


def _read_config_file(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
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
    components["training"] = _override(
        components["training"], {"epochs": args.epochs, "batch_size": args.batch_size}, "command line")
    if args.seed < 0:
        raise SettingsError(f"--seed {args.seed}: use a non-negative integer")
    return Settings(
        paths=Paths(data_dir=args.data_dir, checkpoint_dir=args.checkpoint_dir,
                    models_dir=args.models_dir, results_dir=args.results_dir, log_file=args.log_file),
        seed=args.seed,
        fresh=args.fresh,
        status=args.status,
        predict=tuple(args.predict or ()),
        **components,
    )

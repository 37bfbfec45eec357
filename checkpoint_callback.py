"""Crash-consistent checkpoints after every epoch, and the Keras callback that writes them.

Nothing here knows the model's architecture: a checkpoint is whatever ``model.save`` writes,
plus the training state as JSON.

The checkpoint set in the checkpoint folder:
    model_checkpoint.keras           the model with its optimizer state, and inside the same zip
                                     ``training_state.json``: the last completed epoch, every
                                     metric of every epoch, the best validation value and its
                                     epoch, the settings fingerprint. This one file is the truth:
                                     weights and epoch cannot disagree, because they are one
                                     atomically replaced file.
    model_checkpoint.previous.keras  the set before it, kept until the new one is complete.
    best_model.keras                 a copy of the best epoch's checkpoint: it restores the best
                                     model in models/ when that one is lost or damaged.
    history.npz                      every metric, every epoch so far (plain arrays).
    training_state.json              the state, for people and ``--status``.
    last_epoch.txt                   the last completed epoch, counted from 1 (``cat`` it).
The last three are views of the state inside the model file. They are rewritten after the
model file on every save and repaired from it on resume if missing or different.

Save sequence (after each epoch); a kill at any point leaves a loadable set:
    1-2. write the model and state to a temporary file in the folder, fsync it
    3. if the epoch is a new best, copy that file to best_model.keras in the set and to
       models/exoplanet_cnn_lstm.keras (each atomically)
    4. rename model_checkpoint.keras -> model_checkpoint.previous.keras
    5. rename the temporary file -> model_checkpoint.keras, fsync the folder
    6-8. write history.npz, training_state.json, last_epoch.txt (each atomically)
On resume both model files are checked (zip CRCs, state readable, same settings) before anything
is changed; the newest good one wins, a damaged one is moved aside as ``*.damaged``, and one line
says which epoch was lost. Anything in a file's place that is not a file (a folder, a dangling
link) counts as damaged.

Test hook: ``HYBRID_TRAINING_CRASH_AT=EPOCH:STEP`` makes the process SIGKILL itself during the
save of that epoch, right after that step (1: halfway through writing the temporary model file;
2-8 as above).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import atomic_io
import fingerprints
from errors import TrainerError

log = logging.getLogger(__name__)

STATE_MEMBER = "training_state.json"
CRASH_ENV = "HYBRID_TRAINING_CRASH_AT"


class CheckpointError(TrainerError):
    """The checkpoint cannot be used as it is; the message says why and what to do."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint was made with other settings than this run's."""


class CheckpointDamaged(Exception):
    """One checkpoint file failed its checks (internal: the store falls back or reports)."""


@dataclass
class TrainingState:
    """Everything besides weights and optimizer that an exact resume needs (JSON-able)."""

    epoch: int = 0                                   # last completed epoch, from 1
    history: dict = field(default_factory=dict)      # metric -> one float per epoch
    monitor: str = "val_auc"
    monitor_mode: str = "max"                        # "max": higher is better (AUC); "min": lower (loss)
    best_value: float | None = None
    best_epoch: int = 0
    fingerprint: dict = field(default_factory=dict)  # settings the checkpoint was made with
    resumed_after: list = field(default_factory=list)  # epochs after which a new process took over

    def record_epoch(self, epoch: int, logs: dict, seconds: float) -> bool:
        """Append one epoch's metrics; returns True if the monitored value is a new best."""
        if epoch != self.epoch + 1:
            raise ValueError(f"epoch {epoch} recorded after epoch {self.epoch}")
        self.epoch = epoch
        values = {name: float(value) for name, value in logs.items()}
        values["epoch_seconds"] = float(seconds)
        for name in set(self.history) | set(values):
            column = self.history.setdefault(name, [math.nan] * (epoch - 1))
            column.append(values.get(name, math.nan))
        current = values.get(self.monitor, math.nan)
        better = (current > self.best_value if self.monitor_mode == "max" else current < self.best_value) \
            if self.best_value is not None else True
        if math.isfinite(current) and better:
            self.best_value, self.best_epoch = current, epoch
            return True
        return False

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainingState":
        """Parse and check a saved state; raises ValueError if anything is off."""
        state = cls(**data)
        if not isinstance(state.epoch, int) or state.epoch < 1:
            raise ValueError(f"epoch {state.epoch!r} is not a positive integer")
        for name, column in state.history.items():
            if len(column) != state.epoch:
                raise ValueError(f"history of {name} has {len(column)} values for {state.epoch} epochs")
        if state.monitor_mode not in ("max", "min"):
            raise ValueError(f"monitor_mode {state.monitor_mode!r} is neither 'max' nor 'min'")
        if not 0 <= state.best_epoch <= state.epoch:
            raise ValueError(f"best epoch {state.best_epoch} outside 0..{state.epoch}")
        return state

    def history_arrays(self) -> dict[str, np.ndarray]:
        arrays = {name: np.asarray(values, dtype=np.float64) for name, values in self.history.items()}
        arrays["epoch"] = np.arange(1, self.epoch + 1, dtype=np.int64)
        arrays["resumed_after"] = np.asarray(self.resumed_after, dtype=np.int64)
        return arrays


def read_state_from_model_file(path: Path) -> TrainingState:
    """The state embedded in a checkpoint model file, after checking every zip member's CRC.

    Uses only ``zipfile``: no TensorFlow, so ``--status`` is instant.

    Raises:
        CheckpointDamaged: naming what is wrong.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise CheckpointDamaged(f"it is a link to {os.readlink(path)}, which does not exist")
    if path.is_dir():
        raise CheckpointDamaged("it is a folder, not a file")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise CheckpointDamaged(f"{bad} inside it fails its checksum")
            names = set(archive.namelist())
            for member in ("config.json", "model.weights.h5", STATE_MEMBER):
                if member not in names:
                    raise CheckpointDamaged(f"{member} is missing inside it")
            data = json.loads(archive.read(STATE_MEMBER))
        return TrainingState.from_json(data)
    except CheckpointDamaged:
        raise
    except FileNotFoundError:
        raise CheckpointDamaged("it is missing") from None
    except (zipfile.BadZipFile, EOFError):
        raise CheckpointDamaged("it is truncated or not a Keras checkpoint") from None
    except OSError as error:
        raise CheckpointDamaged(f"it cannot be read ({error.strerror})") from None
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise CheckpointDamaged(f"its training state is invalid ({error})") from None


def _crash_point(epoch: int) -> int | None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return None
    crash_epoch, _, step = spec.partition(":")
    return int(step) if int(crash_epoch) == epoch else None


class CheckpointStore:
    """The checkpoint files in one folder: save a set, find the newest good one, remove them."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.model_file = self.folder / "model_checkpoint.keras"
        self.previous_file = self.folder / "model_checkpoint.previous.keras"
        self.best_file = self.folder / "best_model.keras"
        self.history_file = self.folder / "history.npz"
        self.state_file = self.folder / "training_state.json"
        self.last_epoch_file = self.folder / "last_epoch.txt"

    def files(self) -> list[Path]:
        return [self.model_file, self.previous_file, self.best_file, self.history_file, self.state_file,
                self.last_epoch_file]

    # -- writing -------------------------------------------------------------------------------

    def save(self, model, state: TrainingState, best_model_file: Path | None = None) -> None:
        """Write the set for ``state.epoch`` (see the module docstring for the sequence).

        With ``best_model_file``, the new checkpoint is also copied there and to ``best_file``
        (before it replaces the old checkpoint, so the best model is never behind the state that
        records it as best; the copy in the set restores a lost or damaged best model).

        Raises:
            CheckpointError: if a write fails (no space, permission); the previous set is intact.
        """
        crash_at = _crash_point(state.epoch)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = atomic_io.temporary_path(self.model_file)
        try:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(STATE_MEMBER, json.dumps(state.to_json()))
            if crash_at == 1:
                with open(tmp, "r+b") as handle:
                    handle.truncate(tmp.stat().st_size // 2)
                _crash(1)
            atomic_io.fsync_path(tmp)
            _maybe_crash(crash_at, 2)
            if best_model_file is not None:
                # Copies of the bytes just written: the model is serialised once per epoch.
                for target in (self.best_file, Path(best_model_file)):
                    atomic_io.copy_file(tmp, target)
                _maybe_crash(crash_at, 3)
            if self.model_file.exists():
                os.replace(self.model_file, self.previous_file)
            _maybe_crash(crash_at, 4)
            os.replace(tmp, self.model_file)
            atomic_io.fsync_path(self.folder)
            _maybe_crash(crash_at, 5)
            self.write_views(state, crash_at)
        except OSError as error:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise CheckpointError(
                f"could not write the checkpoint of epoch {state.epoch} in {self.folder} "
                f"({error.strerror or error}); free some space there (or fix its permissions) and rerun: "
                f"the checkpoint of epoch {state.epoch - 1} is intact") from None

    def write_views(self, state: TrainingState, crash_at: int | None = None) -> None:
        """Rewrite history.npz, training_state.json and last_epoch.txt from ``state``."""
        atomic_io.write_npz(self.history_file, **state.history_arrays())
        _maybe_crash(crash_at, 6)
        atomic_io.write_json(self.state_file, state.to_json())
        _maybe_crash(crash_at, 7)
        atomic_io.write_text(self.last_epoch_file, f"{state.epoch}\n")
        _maybe_crash(crash_at, 8)

    def remove_all(self) -> list[Path]:
        removed = []
        for path in self.files():
            if path.is_symlink() or path.exists():
                atomic_io.remove(path)
                removed.append(path)
        removed += atomic_io.remove_stale_temporaries(self.folder)
        for damaged in self.folder.glob("*.damaged*"):
            atomic_io.remove(damaged)
            removed.append(damaged)
        return removed

    # -- reading -------------------------------------------------------------------------------

    def check(self, fingerprint: dict | None = None, digested: dict | None = None) -> None:
        """Raise now what ``restore`` would refuse with; reads only, changes nothing.

        ``digested``: records behind digests in the fingerprint, to name what changed in them
        (``fingerprints.differences``).
        """
        self._choose(fingerprint, digested)

    def restore(self, fingerprint: dict | None = None, read_only: bool = False) -> tuple[Path, TrainingState] | None:
        """The newest good checkpoint (model file, state), repairing the views; None if none exists.

        With ``fingerprint``, a checkpoint made with other settings is not used while one made
        with these exists (a file from another run put in its place); if none matches, nothing
        is used. Every file is checked before any is changed, so a refusal leaves them all as
        they were. Then damaged files are moved aside (``*.damaged``), the good set becomes the
        current one, and the views are rewritten from it, with one line saying what was lost.

        With ``read_only`` the choice is the same but nothing is changed (a worker of a
        multi-worker job reads the chief's folder after the chief has restored it).

        Raises:
            CheckpointMismatch: every usable checkpoint was made with other settings.
            CheckpointError: checkpoint files exist but none is usable, so progress is never
                silently thrown away.
        """
        chosen = self._choose(fingerprint)
        if chosen is None:
            return None
        state, path, problems, claimed = chosen
        if read_only:
            return path, state
        # From here on files change: the chosen set is final.
        atomic_io.remove_stale_temporaries(self.folder)
        newest_gone = path != self.model_file
        lost = f"epochs {state.epoch + 1}-{claimed} are" if claimed and claimed > state.epoch + 1 else \
            f"epoch {state.epoch + 1} is"
        outcome = (f"resuming from {path.name} (epoch {state.epoch}): {lost} lost and will be trained again"
                   if newest_gone else f"the newest checkpoint (epoch {state.epoch}) is intact; nothing is lost")
        if newest_gone and self.model_file not in [p for p, _ in problems]:
            log.warning("WARNING: %s is missing - %s", self.model_file, outcome)
        for damaged_path, why in problems:
            aside = atomic_io.move_aside(damaged_path)
            log.warning("WARNING: %s is unusable (%s) and is kept as %s - %s", damaged_path, why, aside.name, outcome)
        if newest_gone:
            # Make the good set the current one, so the next save's rename keeps it as previous.
            os.replace(self.previous_file, self.model_file)
            atomic_io.fsync_path(self.folder)
            path = self.model_file
        self._repair_views(state, explained=newest_gone)
        return path, state

    def first_readable(self) -> tuple[TrainingState | None, list[tuple[Path, str]]]:
        """The state in the current checkpoint file, else in the previous one, with why each
        file present before it could not be read; reads only (``--status``, ``--predict``)."""
        problems = []
        for path in (self.model_file, self.previous_file):
            if not (path.exists() or path.is_symlink()):
                continue
            try:
                return read_state_from_model_file(path), problems
            except CheckpointDamaged as damage:
                problems.append((path, str(damage)))
        return None, problems

    def _choose(self, fingerprint: dict | None, digested: dict | None = None):
        """(state, path, damaged files with reasons, newest epoch the views claim) of the newest
        usable checkpoint, or None when there is none; reads only (see ``restore``)."""
        candidates, problems = [], []
        for path in (self.model_file, self.previous_file):
            if not (path.exists() or path.is_symlink()):
                continue
            try:
                candidates.append((read_state_from_model_file(path), path))
            except CheckpointDamaged as damage:
                problems.append((path, str(damage)))
        claimed = self.claimed_epoch()
        if not candidates:
            # The set's copy of the best model alone is no evidence: a crash during the first
            # save (after step 3) leaves only it.
            evidence = [p for p in self.files() if p != self.best_file and (p.exists() or p.is_symlink())]
            if problems or evidence:
                details = "; ".join(f"{p.name}: {why}" for p, why in problems) or \
                    f"{self.model_file.name} is missing"
                raise CheckpointError(
                    f"the checkpoint in {self.folder} cannot be used ({details}); restore the file, or "
                    f"start over with --fresh (deletes the checkpoint set)")
            return None
        candidates.sort(key=lambda c: c[0].epoch, reverse=True)
        if fingerprint is not None:
            matching = [c for c in candidates if c[0].fingerprint == fingerprint]
            if not matching:
                state, path = candidates[0]
                raise CheckpointMismatch(
                    f"the checkpoint in {self.folder} (epoch {state.epoch}) was made with other settings: "
                    f"{'; '.join(fingerprints.differences(state.fingerprint, fingerprint, digested=digested))}. "
                    f"Either rerun with the settings it was made with, or start over with --fresh (deletes the "
                    f"checkpoint); the checkpoint is left untouched")
            problems += [(p, "it was made by another run, with other settings") for s, p in candidates
                         if s.fingerprint != fingerprint]
            candidates = matching
        state, path = candidates[0]
        return state, path, problems, claimed

    def claimed_epoch(self) -> int | None:
        """The newest epoch any view (last_epoch.txt, training_state.json, history.npz) records."""
        claims = []
        with contextlib.suppress(OSError, ValueError):
            claims.append(int(self.last_epoch_file.read_bytes().decode("ascii").strip()))
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            claims.append(int(json.loads(self.state_file.read_bytes())["epoch"]))
        with contextlib.suppress(OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            with np.load(self.history_file, allow_pickle=False) as archive:
                claims.append(int(archive["epoch"].max()))
        claims = [claim for claim in claims if claim > 0]
        return max(claims) if claims else None

    def _repair_views(self, state: TrainingState, explained: bool = False) -> None:
        """Make last_epoch.txt, history.npz and training_state.json agree with ``state``.

        ``explained``: the caller already said why they are ahead of the checkpoint.
        """
        problems = []
        try:
            raw = self.last_epoch_file.read_bytes()
        except FileNotFoundError:
            raw = None
            problems.append(f"{self.last_epoch_file.name} is missing")
        except OSError as error:
            raw = None
            problems.append(f"{self.last_epoch_file.name} cannot be read ({error.strerror or error})")
        if raw is not None:
            text = raw.decode("ascii", errors="replace").strip()
            if not text.isdigit():
                problems.append(f"{self.last_epoch_file.name} is empty or damaged ({text[:20]!r})")
            elif int(text) != state.epoch:
                if not explained:
                    log.warning("WARNING: %s says epoch %s, but the checkpoint holds epoch %d - resuming from "
                                "the checkpoint's own epoch (the file was edited or is stale)",
                                self.last_epoch_file, text, state.epoch)
                problems.append("")
        try:
            with np.load(self.history_file, allow_pickle=False) as archive:
                saved = {name: archive[name] for name in archive.files}
            expected = state.history_arrays()
            if saved.keys() != expected.keys() or any(
                    not np.array_equal(saved[k], expected[k], equal_nan=True) for k in expected):
                problems.append("" if explained else f"{self.history_file.name} does not match the checkpoint")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            problems.append(f"{self.history_file.name} is missing or damaged")
        try:
            if json.loads(self.state_file.read_bytes()) != json.loads(json.dumps(state.to_json())):
                problems.append("" if explained else f"{self.state_file.name} does not match the checkpoint")
        except (OSError, ValueError):
            problems.append(f"{self.state_file.name} is missing or damaged")
        if problems:
            described = [p for p in problems if p]
            if described:
                log.info("%s - epoch %d recovered from the checkpoint itself; rewriting them",
                         "; ".join(described), state.epoch)
            self.write_views(state)

    def recover_best_model(self, state: TrainingState, target: Path) -> Path:
        """Make ``target`` hold the best epoch's model again if it is missing, damaged or another's.

        The best model is looked for in the set's own copy, then in the two checkpoints. If all
        are gone, the last checkpoint takes its place, and the log names the epoch whose best
        weights are lost. Returns ``target``.
        """
        target = Path(target)
        wanted = state.best_epoch or state.epoch  # no epoch had a finite score: the last one stands in

        def problem(path: Path) -> str | None:
            try:
                saved = read_state_from_model_file(path)
            except CheckpointDamaged as damage:
                return str(damage)
            if saved.fingerprint != state.fingerprint:
                return "it was made by another run, with other settings"
            if saved.epoch != wanted:
                return f"it holds epoch {saved.epoch}, not the best epoch {wanted}"
            return None

        why = problem(target)
        if why is None:
            return target
        for source in (self.best_file, self.model_file, self.previous_file):
            if problem(source) is None:
                atomic_io.copy_file(source, target)
                log.warning("WARNING: %s: %s - restored the best model (epoch %d) from %s",
                            target, why, wanted, source)
                return target
        atomic_io.copy_file(self.model_file, target)
        log.warning("WARNING: %s: %s, and no copy of the best model (epoch %d) is left - the last checkpoint "
                    "(epoch %d) takes its place; the best weights of epoch %d are lost",
                    target, why, wanted, state.epoch, wanted)
        return target


def _crash(step: int) -> None:
    log.info("(test hook %s: killing this process after save step %d)", CRASH_ENV, step)
    logging.shutdown()
    os.kill(os.getpid(), signal.SIGKILL)


def _maybe_crash(crash_at: int | None, step: int) -> None:
    if crash_at == step:
        _crash(step)


def make_checkpoint_callback(store: CheckpointStore, state: TrainingState, best_model_path: Path,
                             critical_section=contextlib.nullcontext):
    """A Keras callback saving the checkpoint set (and the best model) after every epoch.

    ``critical_section`` is entered around the writes: the training loop uses it to hold off a
    Ctrl-C until the set is complete. The callback updates ``state`` in place; ``improved``
    tells whether the last epoch was a new best, ``save_seconds`` how long each save took.
    """
    import keras

    class CheckpointCallback(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.improved = False
            self.save_seconds = []  # time spent writing, per epoch (for the overhead benchmark)

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            saving = time.perf_counter()
            with critical_section():
                self.improved = state.record_epoch(epoch + 1, logs or {}, saving - self._started)
                store.save(self.model, state, best_model_path if self.improved else None)
            self.save_seconds.append(time.perf_counter() - saving)

    return CheckpointCallback()


# Room to leave free beyond a checkpoint set, for the log and the results.
DISK_HEADROOM_BYTES = 50 * 1024 * 1024


def free_space_if_short(folder: Path, needed: int) -> int | None:
    """The free bytes of ``folder``'s disk (created if missing) when ``needed`` bytes and the
    headroom do not fit there; None when they do."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    return free if free < needed + DISK_HEADROOM_BYTES else None


def check_disk_space(folder: Path, model) -> None:
    """Stop before training if a checkpoint set (two model files and a temporary) won't fit."""
    # Five model files (current, previous, temporary, best in the set and in models/), each the
    # weights plus Adam's two moments in float32, plus the zip and config overhead.
    set_size = 5 * (3 * 4 * model.count_params() + 200 * 1024)
    free = free_space_if_short(folder, set_size)
    if free is not None:
        raise CheckpointError(f"only {free / 1e6:.0f} MB free in {folder}; checkpoints need about "
                              f"{(set_size + DISK_HEADROOM_BYTES) / 1e6:.0f} MB: free some space and rerun")


def status_report(checkpoint_dir: Path, total_epochs: int) -> list[str]:
    """Lines describing training progress, read from the checkpoint without TensorFlow."""
    state, problems = CheckpointStore(checkpoint_dir).first_readable()
    lines = [f"{path}: damaged ({why})" for path, why in problems]
    if state is None:
        if problems:
            return lines + ["No usable checkpoint; a training run will say what to do."]
        return [f"No checkpoint in {checkpoint_dir}: training has not started (or was reset)."]
    lines += [f"Checkpoint: {checkpoint_dir}", f"Last completed epoch: {state.epoch}/{total_epochs}"]
    if state.best_value is not None:
        lines.append(f"Best {state.monitor}: {state.best_value:.4f} at epoch {state.best_epoch}")
    last = {name: values[-1] for name, values in state.history.items()}
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in sorted(last.items()) if name != "epoch_seconds")
    lines.append(f"Last epoch's metrics: {metrics}")
    seconds = state.history.get("epoch_seconds", [])
    if seconds:
        lines.append(f"Average epoch time: {np.mean(seconds):.1f} s over {len(seconds)} epochs")
    if state.resumed_after:
        lines.append(f"Resumed after epochs: {', '.join(map(str, state.resumed_after))}")
    return lines

#!/usr/bin/env python3
"""Train a Conv1D+LSTM network to find exoplanet transits in light curves; resume after any crash.

    python3 hybrid_training.py            # train (or resume), then evaluate
    python3 hybrid_training.py --status   # show progress without touching anything
    python3 hybrid_training.py --help     # every setting

The run is seven stages, each one call into its module:
    [1/7] Discovering datasets   datasets.find_datasets         (generate_built_in if none)
    [2/7] Loading datasets       datasets.load_light_curves     (or the cached split: stages 2-4 done;
                                                                 multi-worker: each its share, shards.gather)
    [3/7] Augmenting             augmentation.plan_split        (the split and its copies, planned)
    [4/7] Preprocessing          data_cache.build -> checkpoints/training_data.npz (+ its .npy arrays;
                                                                 multi-worker: each its share)
    [5/7] Building model         training.prepare_model         (restored from the checkpoint;
                                                                 --distribute: under its strategy)
    [6/7] Training               training.train                 (checkpoint after every epoch)
    [7/7] Evaluating             evaluation.evaluate
"""

from __future__ import annotations

import datetime
import logging
import shlex
import sys
import time

import atomic_io
import data_cache
import distribution
import shards
import training
from augmentation import SPLITS, deepest_dips_of, plan_split
from checkpoint_callback import CheckpointStore
from datasets import find_datasets, generate_built_in, label_survey_files, load_light_curves
from errors import Interrupted, TrainerError
from settings import Paths, SettingsError, parse_settings
from synthetic_data import is_built_in

log = logging.getLogger("hybrid_training")
TRACEBACKS = "hybrid_training.tracebacks"
STAGES = 7


def setup_logging(log_file, argv: list[str], mode: str) -> None:
    """Console and the appended log file (with times); one header line per run.

    Progress goes to stdout, warnings and errors to stderr (so ``2>errors.txt`` keeps only
    them); the log file keeps both.
    """
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    # Tracebacks of unexpected errors go to the log file only (to stderr without one).
    tracebacks = logging.getLogger(TRACEBACKS)
    tracebacks.propagate = False
    progress = logging.StreamHandler(sys.stdout)
    progress.setLevel(logging.INFO)
    progress.addFilter(lambda record: record.levelno < logging.WARNING)
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    for console in (progress, problems):
        console.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(console)
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    except OSError as error:
        log.warning("WARNING: cannot write the log file %s (%s); logging to the console only", log_file,
                    error.strerror)
        tracebacks.addHandler(problems)
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        tracebacks.addHandler(handler)
        handler.stream.write(f"\n===== {datetime.datetime.now().isoformat(timespec='seconds')} "
                             f"python3 {shlex.join(['hybrid_training.py', *argv])} "
                             f"({mode}) =====\n")
    # Keras and absl log through logging too; keep their warnings, not their info.
    for noisy in ("absl", "tensorflow", "keras"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def announce(stage: int, title: str) -> None:
    log.info("")
    log.info("[%d/%d] %s", stage, STAGES, title)


def log_split_sizes(splits) -> None:
    log.info("  %-6s %8s %8s %10s %10s", "split", "curves", "hosts", "augmented", "total")
    for name, split in splits.items():
        copies = int(split.augmented.sum())
        original_hosts = int(split.label[~split.augmented].sum())
        log.info("  %-6s %8d %8d %10d %10d", name, len(split) - copies, original_hosts, copies, len(split))


def run(settings, task, writes) -> None:
    """The seven stages, in order.

    ``task``: this process's place in a ``--distribute`` job (``distribution.Task``); ``writes``:
    the folders it writes, ``settings.paths`` but for a multi-worker job's other workers, which
    read the chief's folders and write into a temporary one.
    """
    paths = settings.paths
    started = time.perf_counter()
    # Before any other TensorFlow operation (mirrored: no GPU is said before the data stages). A
    # multi-worker job's workers join here: they share stages 2 and 4 (shards.py), in step at
    # the job's barriers (``synchronise``). Without --distribute: nothing, TensorFlow loads at stage 5.
    if not task.is_chief:
        log.info("Joining the multi-worker job as %s (TF_CONFIG); the workers share the data preparation, the "
                 "chief writes every other shared file", task.describe())
    strategy = distribution.make_strategy(task)

    def synchronise():
        distribution.barrier(strategy)

    announce(1, "Discovering datasets")
    known_rows = data_cache.known_row_counts(paths.cache_file)
    files = find_datasets(paths.data_dir, known_rows, settings.labels) if task.is_chief else []
    if not files and task.is_chief:
        files = generate_built_in(paths.data_dir, settings.synthetic, settings.seed)
    synchronise()  # the other workers look once the chief has written any built-in data
    if not task.is_chief:
        files = find_datasets(paths.data_dir, known_rows, settings.labels)
        if not files:
            raise distribution.DistributionError(
                f"no light-curve files in {paths.data_dir} on this worker: every worker reads the chief's data; "
                f"share the data folder, or copy it with its times (rsync -a), and rerun")
    files, survey_labels, labels_identity = label_survey_files(files, settings.labels, settings.allow_unlabelled)
    settings = settings.for_data(built_in=is_built_in(paths.data_dir, [f.name for f in files]))
    fingerprint = data_cache.make_fingerprint([f.identity() for f in files], settings.preprocessing,
                                              settings.split, settings.seed, labels_identity)
    distribution.check_same_data(strategy, fingerprint)
    # A checkpoint that stage 5 would refuse is refused now, before any file is written (by the
    # chief: the other workers read its checkpoint at stage 5, once it has restored it).
    if task.is_chief:
        training.check_checkpoint(paths.checkpoint_dir, training.training_fingerprint(
            settings.model, settings.training, settings.seed, fingerprint), settings.fresh,
            (data_cache.saved_fingerprint(paths.cache_file), fingerprint))

    announce(2, "Loading datasets")
    data = data_cache.load(paths.cache_file, fingerprint)
    if task.is_chief:
        data_cache.remove_leftovers(paths.cache_file, keep=data)  # what a killed build left
        data_cache.remove_stale_scratch(paths.cache_file)
    if distribution.agree(strategy, data is None, "whether the data cache must be built"):
        # Each worker loads its share of the files (all of them, alone) to a scratch file beside
        # the cache, and every stage reads the curves by rows from there: the memory stays
        # bounded whatever the size of the data.
        share = shards.share_files(files, task.index, task.workers)
        with data_cache.scratch_file(paths.cache_file, share) as scratch:
            step = time.perf_counter()
            mine = share.files(files)
            if share.workers > 1:
                log.info("This worker loads %d of the %d files; the other workers, the rest", len(mine), len(files))
            curves = load_light_curves(mine, settings.preprocessing, survey_labels=survey_labels, spill_to=scratch,
                                       check_classes=share.workers == 1)
            curves = shards.gather(curves, share, files, paths.cache_file, settings.preprocessing.sequence_length,
                                   synchronise)
            log.info("Loaded %d curves (%d planet hosts) in %.1f s", curves.label.size, int(curves.label.sum()),
                     time.perf_counter() - step)

            announce(3, "Augmenting")
            step = time.perf_counter()
            plan = plan_split(curves.label, curves.star, settings.split, settings.seed,
                              settings.preprocessing.sequence_length,
                              deepest_dips_of(curves.flux, settings.preprocessing))
            if settings.split.injected_planet_max_dip:
                log.info("%d non-hosts have dips deeper than %g sigmas (eclipsing binaries, most often): no planets "
                         "are injected into them (measured in %.1f s)", plan.deep_dip_non_hosts,
                         settings.split.injected_planet_max_dip, time.perf_counter() - step)
            log_split_sizes({name: plan.split(name) for name in SPLITS})

            announce(4, "Preprocessing")
            step = time.perf_counter()
            data = data_cache.build(paths.cache_file, curves, plan, fingerprint, settings.preprocessing, share,
                                    synchronise)
            curves.flux.close()  # so that deleting the scratch file frees its disk space now, not at exit
            log.info("Made the copies and preprocessed %d curves in %.1f s%s; saved the split to %s",
                     sum(len(s) for s in data.splits.values()), time.perf_counter() - step,
                     f" ({share.workers} workers)" if share.workers > 1 else "", paths.cache_file)
    else:
        announce(3, "Augmenting")
        log_split_sizes(data.splits)
        announce(4, "Preprocessing")
        log.info("Using the preprocessed curves from %s", paths.cache_file)
    log.info("Stages 1-4 took %.1f s", time.perf_counter() - started)

    announce(5, "Building model")
    # The other workers restore the chief's checkpoint, once the chief has, and save into their temporary folder.
    prepared = training.prepare_model(data, settings.model, settings.training, settings.seed, writes, settings.fresh,
                                      strategy=strategy, synchronise=lambda: distribution.barrier(strategy),
                                      restore_from=None if task.is_chief else CheckpointStore(paths.checkpoint_dir))
    distribution.check_same_epoch(strategy, prepared.state.epoch)
    # Written once the checkpoint is accepted, so a refused run leaves every file as it was.
    atomic_io.write_json(writes.preprocessor_file, {"preprocessing": settings.preprocessing.to_json()})
    atomic_io.write_json(writes.settings_file, settings.to_json())
    log.info("Preprocessing settings saved to %s", writes.preprocessor_file)

    announce(6, "Training")
    state = training.train(prepared, data, settings.training, settings.seed, writes.checkpoint_dir,
                           writes.best_model_file, strategy=strategy)

    announce(7, "Evaluating")
    if not task.is_chief:
        log.info("The chief evaluates the best model and writes the results; this worker is done")
        return
    import evaluation

    evaluation.evaluate(paths, data, state, settings.training.batch_size, settings.preprocessing, settings.seed,
                        settings.synthetic.completeness_rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = parse_settings(argv)
    except SettingsError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return error.exit_code
    if settings.status:
        from checkpoint_callback import status_report

        print("\n".join(status_report(settings.paths.checkpoint_dir, settings.training.epochs)))
        return 0
    if settings.predict:
        mode = "predicting"
    elif settings.fresh:
        mode = "fresh start (--fresh)"
    elif CheckpointStore(settings.paths.checkpoint_dir).model_file.exists():
        mode = "resuming from checkpoint"
    else:
        mode = "no checkpoint"
    try:
        task = distribution.task_from_environment(settings.distribute)
    except TrainerError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return error.exit_code
    worker_folder = distribution.worker_folder(task)
    writes = settings.paths if worker_folder is None else Paths(
        data_dir=settings.paths.data_dir, checkpoint_dir=worker_folder / "checkpoints",
        models_dir=worker_folder / "models", results_dir=worker_folder / "results",
        log_file=worker_folder / "training_full.log")
    setup_logging(writes.log_file, argv, mode if task.is_chief else f"{mode}; {task.describe()}")
    try:
        if settings.predict:
            import evaluation

            evaluation.predict(settings)
        else:
            with atomic_io.exclusive_folder(writes.checkpoint_dir, "a training run"):
                run(settings, task, writes)
    except Interrupted as interrupt:
        log.warning("%s", interrupt)
        return interrupt.exit_code
    except TrainerError as error:
        log.error("ERROR: %s", error)
        return error.exit_code
    except KeyboardInterrupt:
        log.error("Interrupted before training started; nothing saved is lost. Rerun the same command to continue.")
        return 130
    except Exception as error:  # a bug: one line on the console, the traceback in the log file
        logging.getLogger(TRACEBACKS).error("Unexpected error", exc_info=True)
        log.error("INTERNAL ERROR: %s: %s. Nothing saved is lost (every file is written atomically); the "
                  "traceback is in %s - please report it", type(error).__name__,
                  str(error).splitlines()[0][:200] if str(error) else "", settings.paths.log_file)
        return 1
    finally:
        distribution.remove_worker_folder(worker_folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Data preparation shared among the workers of a multi-worker job (``--distribute multi-worker``).

With N workers, stages 2 and 4 are divided among them; every worker reads and writes the shared
checkpoint folder (README, "Scaling out"), and the job's barriers keep them in step:

    [2/7] each worker loads a contiguous run of the data files (``share_files``: about 1/N of the
          bytes, a star's files never divided) into a scratch file of its own beside the cache,
          and writes what it loaded but the curves (labels, lines, stars) beside it; after a
          barrier every worker reads all of them (``gather``): the curves of the whole data set,
          in file order, exactly as one process loads them, read from the N scratch files.
    [3/7] every worker plans the split from those labels: the same plan (it is drawn from the seed).
    [4/7] each worker makes and preprocesses about 1/N of each split (``data_cache.build``) into
          array files of its own; the chief writes the index naming them all and recording which
          worker loaded which files and made which rows.

The cache's arrays are the same bits as one process makes (the data fingerprint, and so every
checkpoint, does not depend on the number of workers). One process is a job of one worker:
these functions then change nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import atomic_io


@dataclass(frozen=True)
class Share:
    """Worker ``index`` of ``workers`` (0 is the chief) and the run of files each worker loads."""

    index: int = 0
    workers: int = 1
    file_runs: tuple[tuple[int, int], ...] = ()  # (first file, end file) of each worker

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @property
    def suffix(self) -> str:
        return self.suffix_of(self.index)

    def suffix_of(self, worker: int) -> str:
        """What the files of ``worker``'s shard are named with: ``.2of3`` for the second of three."""
        return f".{worker + 1}of{self.workers}"

    def files(self, files: list) -> list:
        """This worker's run of ``files``."""
        first, end = self.file_runs[self.index]
        return files[first:end]

    def scratch_file(self, cache_file: Path, worker: int | None = None) -> Path:
        """The hidden file beside the cache where ``worker`` (this one if None) puts the curves it loads."""
        cache_file = Path(cache_file)
        worker = self.index if worker is None else worker
        return cache_file.with_name(f".{cache_file.stem}.loaded{atomic_io.TEMPORARY_MARK}job"
                                    f"{self.suffix_of(worker)}.raw")

    def loaded_file(self, cache_file: Path, worker: int | None = None) -> Path:
        """Beside ``scratch_file``: what ``worker`` loaded but the curves."""
        return self.scratch_file(cache_file, worker).with_suffix(".npz")


def share_files(files: list, index: int, workers: int) -> Share:
    """Worker ``index``'s share of the data preparation: the files in ``workers`` contiguous runs
    of about equal bytes, a cut never falling between two files of one star (survey files of
    one target: quarters, sectors), so each worker loads whole stars.

    >>> from types import SimpleNamespace as F
    >>> share_files([F(name=n, size=s, layout="kaggle") for n, s in zip("abcd", (5, 5, 5, 1))], 1, 2).file_runs
    ((0, 2), (2, 4))
    """
    if workers == 1:
        return Share(index, workers, ((0, len(files)),))
    from datasets import SURVEY
    from survey_files import survey_star

    # A cut is allowed before a file unless it is of the same star as the file before it.
    stars = [survey_star(f.path) if f.layout == SURVEY else f"file {f.name}" for f in files]
    allowed = [0] + [i for i in range(1, len(files)) if stars[i] != stars[i - 1]] + [len(files)]
    starts = np.concatenate([[0], np.cumsum([f.size for f in files])])
    cuts = [0]
    for worker in range(1, workers):
        target = starts[-1] * worker / workers
        best = min(allowed, key=lambda i: (abs(starts[i] - target), -i))  # a tie: the earlier worker loads more
        cuts.append(max(cuts[-1], best))
    cuts.append(len(files))
    return Share(index, workers, tuple((cuts[j], cuts[j + 1]) for j in range(workers)))


def gather(mine, share: Share, files: list, cache_file: Path, sequence_length: int, synchronise):
    """The curves of every worker's share, as one ``LoadedCurves``; ``mine`` as is with one worker.

    Writes what this worker loaded (``mine``, but its curves: those are in its scratch file)
    beside its scratch file, waits for every worker (``synchronise``), then reads them all in
    worker order, which is file order. Stars are numbered as one process numbers them: a
    Kaggle-layout row is its own star, counted over the files before it; a survey file's
    target, by its first appearance.

    Raises:
        DataError: the labels of all the workers' curves together cannot train a classifier.
    """
    from datasets import SURVEY, LoadedCurves, check_both_classes
    from row_store import RowFile, RowFiles

    if share.workers == 1:
        return mine
    atomic_io.write_npz(share.loaded_file(cache_file), label=mine.label, source=mine.source, line=mine.line,
                        star=mine.star, star_names=np.array(mine.star_names, dtype=str),
                        report=np.array(json.dumps(mine.report, default=_plain)))
    synchronise()  # every worker has loaded its files
    label, source, line, star, reports, parts = [], [], [], [], [], []
    star_ids: dict[str, int] = {}
    rows_before = 0  # Kaggle-layout rows in the files before this worker's
    for worker, (first, end) in enumerate(share.file_runs):
        with np.load(share.loaded_file(cache_file, worker), allow_pickle=False) as loaded:
            # Survey star -1 - k here is this worker's k-th name: renumbered by the names' first appearance.
            renumbered = np.array([star_ids.setdefault(str(name), -1 - len(star_ids)) for name in loaded["star_names"]],
                                  np.int64)
            local = loaded["star"].astype(np.int64)
            survey = local < 0
            numbers = local + rows_before
            numbers[survey] = renumbered[-1 - local[survey]]
            star.append(numbers)
            label.append(loaded["label"])
            source.append(loaded["source"] + first)
            line.append(loaded["line"])
            report = json.loads(str(loaded["report"]))
        reports += report
        rows_before += sum(int(r["rows"]) for f, r in zip(files[first:end], report) if f.layout != SURVEY)
        if len(label[-1]):
            parts.append(RowFile(share.scratch_file(cache_file, worker), (len(label[-1]), sequence_length), np.float32))
    curves = LoadedCurves(flux=RowFiles(parts) if parts else np.empty((0, sequence_length), np.float32),
                          label=np.concatenate(label).astype(np.int8), source=np.concatenate(source).astype(np.int32),
                          line=np.concatenate(line).astype(np.int64), star=np.concatenate(star),
                          star_names=list(star_ids), files=[f.name for f in files], report=reports)
    check_both_classes(curves)
    return curves


def _plain(value):
    """A numpy number in a file's loading report, as JSON writes a Python one."""
    return value.item() if hasattr(value, "item") else str(value)


def records(share: Share, curves) -> list[dict]:
    """What each worker loaded, as the cache index records it (``data_cache.build`` adds the rows it made)."""
    return [{"worker": worker + 1, "of": share.workers, "files": curves.files[first:end],
             "curves": int(((curves.source >= first) & (curves.source < end)).sum())}
            for worker, (first, end) in enumerate(share.file_runs)]

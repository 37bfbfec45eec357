"""Stage [3/7]: split the curves into train/validation/test, then augment the training hosts.

Split first, then augment: the split is stratified and seeded over the original curves, and
only training curves are copied, so no star (or a copy of it) ever sits in two splits. Every
row of every split carries ``index``, the position of its original curve in the loaded data,
which makes that checkable.

Augmentation multiplies the planet hosts of the training split (the minority class) with
transformations that keep a transit a physical transit:
    time reversal      a transit is symmetric (ingress = egress), so a reversed curve is a
                       valid curve of the same star;
    circular shift     moves the transits in time; the join is one more closed-up gap, which
                       real Kepler curves have too;
    small noise        white noise of 0.2-0.5 of the curve's own point-to-point scatter
                       (scale-free), as if the star were slightly fainter.
Each copy gets a random shift, reversal with probability 1/2 and noise with probability 1/2,
from a generator seeded by the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from errors import TrainerError
from preprocessing import MAD_TO_SIGMA

SPLITS = ("train", "val", "test")


class SplitError(TrainerError):
    """Too few curves (of a class) to make a stratified split."""


@dataclass(frozen=True)
class SplitConfig:
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    augment_copies: int = 4       # extra copies of each training planet host

    def __post_init__(self):
        if not 0.0 < self.validation_fraction < 0.5 or not 0.0 < self.test_fraction < 0.5:
            raise ValueError("validation_fraction and test_fraction must each be between 0 and 0.5, got "
                             f"{self.validation_fraction} and {self.test_fraction}")
        if not 0 <= self.augment_copies <= 100:
            raise ValueError(f"augment_copies must be between 0 and 100, got {self.augment_copies}")


@dataclass
class Split:
    """Curves, labels (1 = host) and original-row indices of one split."""

    flux: np.ndarray
    label: np.ndarray
    index: np.ndarray
    augmented: np.ndarray  # bool: row is a transformed copy

    def __len__(self):
        return int(self.label.size)

    def hosts(self) -> int:
        return int((self.label == 1).sum())


def stratified_split(label: np.ndarray, config: SplitConfig, seed: int) -> dict[str, np.ndarray]:
    """Indices of train/val/test rows, stratified by label and reproducible for a seed.

    Raises:
        SplitError: when a class has too few rows to appear in every split.
    """
    # Imported here: settings.py imports this module, and --status should not load scikit-learn.
    from sklearn.model_selection import train_test_split

    index = np.arange(label.size)
    holdout = config.validation_fraction + config.test_fraction
    for value, name in ((1, "planet hosts"), (0, "non-hosts")):
        count = int((label == value).sum())
        # Each split needs at least one of each class: the smallest share decides.
        needed = int(np.ceil(1.0 / min(config.validation_fraction, config.test_fraction, 1 - holdout)))
        if count < max(3, needed):
            raise SplitError(f"only {count} {name} in the data; a stratified {1 - holdout:.0%}/"
                             f"{config.validation_fraction:.0%}/{config.test_fraction:.0%} split needs at "
                             f"least {max(3, needed)}: add more labelled light curves")
    try:
        train, rest = train_test_split(index, test_size=holdout, stratify=label, random_state=seed)
        val, test = train_test_split(rest, test_size=config.test_fraction / holdout, stratify=label[rest],
                                     random_state=seed)
    except ValueError as error:
        raise SplitError(f"cannot split {label.size} curves ({error}); add more labelled light curves") from None
    for name, rows in (("train", train), ("validation", val), ("test", test)):
        if len(np.unique(label[rows])) < 2:
            raise SplitError(f"the {name} split would hold only one class; add more labelled light curves")
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def augment_hosts(flux: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """``copies`` transformed copies of each row of ``flux`` (rows are planet hosts).

    Returns:
        [rows * copies, cadences] array; copy j of row i is at i * copies + j.
    """
    rows, n = flux.shape
    if rows == 0 or copies == 0:
        return np.empty((0, n), dtype=flux.dtype)
    source = np.repeat(np.arange(rows), copies)
    shift = rng.integers(1, n, source.size)
    reverse = rng.random(source.size) < 0.5
    noisy = rng.random(source.size) < 0.5
    noise_level = rng.uniform(0.2, 0.5, source.size)
    # Point-to-point scatter: immune to the star's slow variability and to the flux scale.
    scatter = MAD_TO_SIGMA * np.median(np.abs(np.diff(flux, axis=1)), axis=1) / np.sqrt(2.0)
    columns = (np.arange(n)[None, :] - shift[:, None]) % n
    columns = np.where(reverse[:, None], n - 1 - columns, columns)
    copied = flux[source[:, None], columns].astype(np.float64)
    copied += (noisy * noise_level * scatter[source])[:, None] * rng.standard_normal((source.size, n))
    return copied.astype(flux.dtype)


def split_and_augment(flux: np.ndarray, label: np.ndarray, config: SplitConfig, seed: int) -> dict[str, Split]:
    """Stratified split of the original rows, then augmentation of the training hosts only."""
    rows = stratified_split(label, config, seed)
    splits = {name: Split(flux=flux[rows[name]], label=label[rows[name]], index=rows[name],
                          augmented=np.zeros(rows[name].size, dtype=bool)) for name in SPLITS}
    train = splits["train"]
    host_rows = np.flatnonzero(train.label == 1)
    copies = augment_hosts(train.flux[host_rows], config.augment_copies, np.random.default_rng([seed, 3]))
    if copies.shape[0]:
        splits["train"] = Split(
            flux=np.concatenate([train.flux, copies]),
            label=np.concatenate([train.label, np.ones(copies.shape[0], dtype=train.label.dtype)]),
            index=np.concatenate([train.index, np.repeat(train.index[host_rows], config.augment_copies)]),
            augmented=np.concatenate([train.augmented, np.ones(copies.shape[0], dtype=bool)]))
    return splits

"""A validation split for datasets that ship only train and test (digits, image folders, most
tfds image sets): a fixed, stratified fraction of the train split, held out before any label
budget is applied, so early stopping never looks at the test split."""

from __future__ import annotations

import numpy as np

from ssl_jax.data.records import subset_split
from ssl_jax.data.source import Dataset
from ssl_jax.registry import ConfigError

VALIDATION = "validation"


def hold_out_validation(dataset: Dataset, fraction: float, seed: int = 0) -> Dataset:
  """`dataset` with `fraction` of its train split moved, stratified by label, into a new
  "validation" split; returned unchanged if it already has one."""
  # scikit-learn takes seconds to import: only when data is built, so `--help` and a refused
  # config do not wait for it.
  from sklearn.model_selection import train_test_split

  if VALIDATION in dataset.splits:
    return dataset
  if not 0.0 < fraction < 1.0:
    raise ConfigError(
      f"config.early_stopping.validation_fraction must lie in (0, 1) when the "
      f"dataset has no {VALIDATION!r} split (it has {sorted(dataset.splits)}); "
      f"got {fraction}."
    )
  train = dataset.split(dataset.train_split)
  if "label" not in train:
    raise ConfigError(
      f"Holding out a validation split needs labels; the train split has only {sorted(train)}."
    )
  labels = np.asarray(train["label"])
  kept, held_out = train_test_split(
    np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed
  )
  splits = {
    **dataset.splits,
    dataset.train_split: subset_split(train, np.sort(kept)),
    VALIDATION: subset_split(train, np.sort(held_out)),
  }
  return Dataset(
    splits=splits,
    modality=dataset.modality,
    train_split=dataset.train_split,
    info={**dataset.info, "validation_held_out": int(len(held_out))},
  )

"""Few-label training sets: keep `per_class` labelled examples of each class in the train split.

  config.label_budget = {"per_class": 5, "draw": 2, "unlabelled": "drop"}

`draw` picks which examples (the same draws as the probes' `labelled_subsets`, so a
fine-tune at 5 labels per class, draw 2, sees the images a linear probe at that budget does).
The kept examples are repeated, in a seeded order, to the size of the full train split, so a
few labels still fill fixed-size batches and an "epoch" means as many steps as with every label.

`indices` names the labelled train examples outright (what active learning chose; per_class
and draw are then unused), and `labels`, when given, is their labels in the same order (an
annotator's answers, which replace whatever the split holds):

  config.label_budget = {"indices": [17, 3, 250], "labels": [4, 0, 9]}

Datasets whose labels are not one per row name the column budgets count in
`info["budget_column"]` (tagged sentences: `tag_group`, the sentence's rarest entity type, so
per_class=k keeps k sentences for every entity type); only `unlabelled="drop"` applies there.

`unlabelled` says what happens to the other examples:
  drop  the train split is the labelled subset only (supervised fine-tuning);
  pair  every train example stays, unlabelled, and each row also carries one labelled example
        as `labelled_<field>` with its `label`: a batch is B unlabelled plus B labelled rows,
        which is what the semi-supervised objectives take (pretext loss or pseudo-labels on
        the first, cross entropy on the second).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ssl_jax.data.records import RecordSplit, take_rows
from ssl_jax.data.source import Dataset
from ssl_jax.registry import ConfigError

UNLABELLED = ("drop", "pair")
LABELLED_PREFIX = "labelled_"


def labelled_indices(labels: np.ndarray, per_class: int, draw: int, seed: int) -> np.ndarray:
  """Sorted indices of `per_class` examples of each class (every labelled one if 0), chosen
  by (seed, draw); records labelled -1 are never chosen."""
  labels = np.asarray(labels)
  if per_class == 0:
    return np.flatnonzero(labels >= 0)
  rng = np.random.default_rng([seed, draw])
  chosen = []
  for label in np.unique(labels[labels >= 0]):
    members = np.flatnonzero(labels == label)
    if len(members) < per_class:
      raise ConfigError(
        f"config.label_budget.per_class={per_class}, but class {label} has "
        f"only {len(members)} labelled training examples."
      )
    chosen.append(rng.choice(members, size=per_class, replace=False))
  return np.sort(np.concatenate(chosen))


def _split_of(read, size: int, like: Mapping[str, Any], columns: dict[str, str]):
  """A split of `size` rows whose rows at `indices` are `read(indices)`: numpy arrays when
  `like` is in memory, a lazy RecordSplit (decoding only the batches asked for) otherwise.
  `columns` maps each output column to the column of `like` it has the shape of."""
  if not isinstance(like, RecordSplit):
    return read(np.arange(size))
  return RecordSplit(
    size,
    read,
    {name: (tuple(like[source].shape[1:]), like[source].dtype) for name, source in columns.items()},
  )


def chosen_indices(
  size: int, indices, labels, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
  """Checked `indices` (distinct, in [0, size)) and `labels` (as many, in [0, num_classes))."""
  kept = np.asarray(list(indices), np.int64)
  if kept.ndim != 1 or not len(kept):
    raise ConfigError("config.label_budget.indices must be a non-empty list of train indices.")
  if kept.min() < 0 or kept.max() >= size:
    bad = int(kept[(kept < 0) | (kept >= size)][0])
    raise ConfigError(
      f"config.label_budget.indices holds {bad}, outside the {size} train examples [0, {size})."
    )
  if len(np.unique(kept)) != len(kept):
    raise ConfigError("config.label_budget.indices names an example twice.")
  if not len(labels):
    return kept, None
  given = np.asarray(list(labels), np.int64)
  if given.shape != kept.shape:
    raise ConfigError(
      f"config.label_budget.labels has {len(given)} labels for {len(kept)} indices."
    )
  if num_classes is not None and (given.min() < 0 or given.max() >= num_classes):
    raise ConfigError(
      f"config.label_budget.labels must be class indices in [0, {num_classes}); got "
      f"{int(given[(given < 0) | (given >= num_classes)][0])}."
    )
  return kept, given


def apply_label_budget(
  dataset: Dataset,
  per_class: int = 0,
  draw: int = 0,
  unlabelled: str = "drop",
  seed: int = 0,
  indices=(),
  labels=(),
) -> Dataset:
  """`dataset` with its train split cut to the budget (see the module docstring); per_class=0
  and unlabelled="drop" without indices leave it as it is. Other splits are untouched."""
  if unlabelled not in UNLABELLED:
    raise ConfigError(
      f"Unknown config.label_budget.unlabelled {unlabelled!r}; valid: {list(UNLABELLED)}."
    )
  if per_class < 0:
    raise ConfigError(
      f"config.label_budget.per_class must be >= 0 (0 = every label); got {per_class}."
    )
  if per_class == 0 and unlabelled == "drop" and not len(indices):
    return dataset
  train = dataset.split(dataset.train_split)
  column = dataset.info.get("budget_column", "label")
  if column not in train:
    raise ConfigError(
      f"config.label_budget needs {column!r} in the train split; "
      f"{dataset.train_split!r} has only {sorted(train)}."
    )
  if column != "label" and (len(labels) or unlabelled != "drop"):
    raise ConfigError(
      f"config.label_budget.labels and unlabelled='pair' need whole-row labels; "
      f"these rows are budgeted by {column!r} (k rows per group)."
    )
  size = len(train[column])
  given = None
  if len(indices):
    kept, given = chosen_indices(size, indices, labels, dataset.info.get("num_classes"))
  else:
    kept = labelled_indices(np.asarray(train[column]), per_class, draw, seed)
  # A seeded shuffle, then repetition to the full size: every kept example appears
  # size // len(kept) or one more times.
  order = np.random.default_rng([seed, draw, 1]).permutation(kept)
  repeated = np.resize(order, size)
  inputs = [name for name in train if name != "label"]

  def labelled_rows(positions):
    rows = take_rows(train, positions)
    if given is not None:  # the annotator's answers replace the split's labels
      order = np.argsort(kept)
      rows["label"] = given[order][np.searchsorted(kept[order], positions)].astype(
        rows["label"].dtype
      )
    return rows

  if unlabelled == "drop":
    columns = {name: name for name in train}

    def read(indices):
      return labelled_rows(repeated[indices])
  else:
    columns = {
      **{name: name for name in inputs},
      "label": "label",
      **{LABELLED_PREFIX + name: name for name in inputs},
    }

    def read(indices):
      labelled, rows = labelled_rows(repeated[indices]), take_rows(train, indices)
      return {
        **{name: rows[name] for name in inputs},
        "label": labelled["label"],
        **{LABELLED_PREFIX + name: labelled[name] for name in inputs},
      }

  budget = _split_of(read, size, train, columns)
  splits = {**dataset.splits, dataset.train_split: budget}
  info = {**dataset.info, "labelled_examples": int(len(kept)), "unlabelled": unlabelled}
  return Dataset(
    splits=splits, modality=dataset.modality, train_split=dataset.train_split, info=info
  )

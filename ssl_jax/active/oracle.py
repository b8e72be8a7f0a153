"""Who reveals the labels of queried examples: the dataset itself (a simulation: the pool's
hidden labels) or a person (`human`), through files in the workdir.

`human` writes `<workdir>/queries/round_<k>.csv` with the columns `id` (the pool index), `text`
(text data: the example decoded) and an empty `label`, and for images a contact sheet
`round_<k>.png` of the queried images with their ids; the run then stops (`AwaitingLabels`,
exit code 4) saying what to fill in. Run the same command again once every `label` holds a
class name: the labels are checked (a row whose id was not queried, an empty label or an
unknown class is an error naming the row and the valid classes) and the round goes on.
"""

from __future__ import annotations

import abc
import csv
import os

import numpy as np

from ssl_jax.data.source import Dataset
from ssl_jax.data.tokenizer import load_tokenizer
from ssl_jax.errors import DataError, RunEnded
from ssl_jax.files import atomic_path
from ssl_jax.registry import Registry

AWAITING_LABELS_EXIT_CODE = 4


class AwaitingLabels(RunEnded):  # noqa: N818  (a stop, not an error)
  """The run stopped for a person to label a round's queries."""

  exit_code = AWAITING_LABELS_EXIT_CODE


class Oracle(abc.ABC):
  """Reveals the labels of queried pool examples."""

  # Whether the hidden labels exist to read: the class-stratified reference strategy needs them.
  knows_all_labels: bool = False

  def __init__(self, dataset: Dataset, workdir: str):
    self.dataset, self.workdir = dataset, workdir

  def class_names(self) -> list[str]:
    names = self.dataset.info.get("class_names")
    return [str(n) for n in names] if names else [str(c) for c in range(self.num_classes)]

  @property
  def num_classes(self) -> int:
    return int(self.dataset.info["num_classes"])

  @abc.abstractmethod
  def reveal(self, round_index: int, indices: np.ndarray) -> np.ndarray:
    """[K] int labels of the pool examples `indices`, in their order."""


ORACLES: Registry[type[Oracle]] = Registry("oracle")


@ORACLES.register("dataset")
class DatasetOracle(Oracle):
  """The pool's own labels, hidden until queried (simulated annotation)."""

  knows_all_labels = True

  def reveal(self, round_index: int, indices: np.ndarray) -> np.ndarray:
    del round_index
    return np.asarray(self.dataset.split("train")["label"])[indices].astype(np.int64)


@ORACLES.register("human")
class HumanOracle(Oracle):
  """Labels a person writes into `queries/round_<k>.csv` (see the module docstring)."""

  def paths(self, round_index: int) -> tuple[str, str]:
    base = os.path.join(self.workdir, "queries", f"round_{round_index}")
    return base + ".csv", base + ".png"

  def reveal(self, round_index: int, indices: np.ndarray) -> np.ndarray:
    table, sheet = self.paths(round_index)
    if not os.path.isfile(table):
      self.write_queries(table, sheet, indices)
      raise AwaitingLabels(
        f"Round {round_index}: {len(indices)} examples to label. Fill the `label` column of "
        f"{table} with one of {self.class_names()} per row"
        + (f" (the images are in {sheet})" if self.dataset.modality == "image" else "")
        + ", then run the same command again."
      )
    return self.read_labels(table, indices)

  def write_queries(self, table: str, sheet: str, indices: np.ndarray) -> None:
    os.makedirs(os.path.dirname(table), exist_ok=True)
    rows = [{"id": int(i)} for i in indices]
    train = self.dataset.split("train")
    if self.dataset.modality == "text":
      for row, text in zip(rows, self.texts(np.asarray(train["tokens"])[indices])):
        row["text"] = text
    if self.dataset.modality == "image":
      contact_sheet(np.asarray(train["image"])[indices], [int(i) for i in indices], sheet)
    with atomic_path(table) as partial, open(partial, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=[*rows[0], "label"])
      writer.writeheader()
      writer.writerows({**row, "label": ""} for row in rows)

  def texts(self, tokens: np.ndarray) -> list[str]:
    tokenizer = load_tokenizer(self.dataset.info["tokenizer_path"])
    return [tokenizer.decode([int(t) for t in row]) for row in tokens]

  def read_labels(self, table: str, indices: np.ndarray) -> np.ndarray:
    names = self.class_names()
    index_of = {name: c for c, name in enumerate(names)}
    with open(table, newline="") as f:
      rows = list(csv.DictReader(f))
    where = os.path.basename(table)
    wanted = [int(i) for i in indices]
    ids = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
      try:
        ids.append(int(str(row.get("id", "")).strip()))
      except ValueError:
        raise DataError(
          f"{where} line {number}: id {row.get('id')!r} is not a pool index."
        ) from None
    if sorted(ids) != sorted(wanted):
      extra = sorted(set(ids) - set(wanted)) or sorted(i for i in ids if ids.count(i) > 1)
      missing = sorted(set(wanted) - set(ids))
      raise DataError(
        f"{where}: the ids must be the {len(wanted)} queried examples; "
        + (f"not queried or repeated: {extra[:5]}" if extra else f"missing: {missing[:5]}")
        + "."
      )
    labels = {}
    for number, (row, pool_id) in enumerate(zip(rows, ids), start=2):
      label = str(row.get("label") or "").strip()
      if not label:
        raise DataError(f"{where} line {number} (id {pool_id}): empty label; valid: {names}.")
      if label not in index_of:
        raise DataError(
          f"{where} line {number} (id {pool_id}): unknown class {label!r}; valid: {names}."
        )
      labels[pool_id] = index_of[label]
    return np.asarray([labels[i] for i in wanted], np.int64)


def contact_sheet(images: np.ndarray, ids: list[int], path: str, columns: int = 10) -> None:
  """A grid of `images` ([K, H, W, C], floats in [0, 1] or uint8) titled with their ids."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = -(-len(images) // columns)
  figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.25), squeeze=False)
  for k, axis in enumerate(axes.ravel()):
    axis.axis("off")
    if k < len(images):
      image = np.asarray(images[k], np.float32)
      image = image / 255.0 if image.max() > 1.0 else image
      axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
      axis.set_title(str(ids[k]), fontsize=8)
  figure.tight_layout()
  with atomic_path(path, suffix=".png") as partial:
    figure.savefig(partial, dpi=100)
  plt.close(figure)

"""The in-memory dataset contract every source returns."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ssl_jax.errors import DataError


@dataclasses.dataclass
class Dataset:
  """Named splits of equally long numpy arrays, plus what the task needs to know about them.

  Attributes:
    splits: e.g. {"train": {"image": [N,H,W,C], "label": [N]}, "test": {...}}.
    train_split: the split the trainer iterates over.
    modality: "image" or "text"; tasks check it so a mismatch fails early with a clear message.
    info: source-specific facts (num_classes, vocab_size, special token ids, tokenizer path...).
  """

  splits: dict[str, dict[str, np.ndarray]]
  modality: str
  train_split: str = "train"
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    for name, arrays in self.splits.items():
      lengths = {key: len(value) for key, value in arrays.items()}
      if len(set(lengths.values())) != 1:
        raise DataError(f"Split {name!r} has arrays of different lengths: {lengths}.")

  def split(self, name: str) -> dict[str, np.ndarray]:
    if name not in self.splits:
      raise DataError(f"Unknown split {name!r}; this dataset has {sorted(self.splits)}.")
    return self.splits[name]

  def num_examples(self, name: str) -> int:
    return len(next(iter(self.split(name).values())))


def unit_float_images(batch: dict[str, Any]) -> dict[str, Any]:
  """A batch whose uint8 "image" ([0, 255]) is turned into float32 in [0, 1]; the rest as is.

  Sources that decode files keep uint8 on the host (4x less to copy to the device). The jitted
  step, the state init and the evaluators call this, so every task sees floats in [0, 1] and the
  conversion fuses into the first op on device. Works on numpy and jax arrays alike.
  """
  converted = {
    key: batch[key].astype(np.float32) / 255.0
    for key in ("image", "labelled_image")
    if key in batch and batch[key].dtype == np.uint8
  }
  return {**batch, **converted} if converted else batch

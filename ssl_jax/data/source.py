"""The in-memory dataset contract every source returns."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


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
        raise ValueError(f"Split {name!r} has arrays of different lengths: {lengths}.")

  def split(self, name: str) -> dict[str, np.ndarray]:
    if name not in self.splits:
      raise KeyError(f"Unknown split {name!r}; this dataset has {sorted(self.splits)}.")
    return self.splits[name]

  def num_examples(self, name: str) -> int:
    return len(next(iter(self.split(name).values())))

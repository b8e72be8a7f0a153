"""scikit-learn's 8x8 handwritten digits, shipped with the package: the offline image default."""

from __future__ import annotations

import numpy as np

from ssl_jax.data.source import Dataset
from ssl_jax.registry import DATASETS


@DATASETS.register("digits", modality="image", splits=("train", "test"))
def digits(workdir: str | None = None, test_fraction: float = 0.3, split_seed: int = 0) -> Dataset:
  """1797 images [8, 8, 1] in [0, 1], 10 classes, with a fixed stratified train/test split.

  The default split (30% test, seed 0) is the one the docs' baselines are measured on:
  1257 train and 540 test images.
  """
  # scikit-learn takes seconds to import: only when data is built, so `--help` and a refused
  # config do not wait for it.
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  del workdir  # Nothing to cache.
  images, labels = load_digits(return_X_y=True)
  images = (images / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
  labels = labels.astype(np.int32)
  train_x, test_x, train_y, test_y = train_test_split(
    images, labels, test_size=test_fraction, stratify=labels, random_state=split_seed
  )
  return Dataset(
    splits={
      "train": {"image": train_x, "label": train_y},
      "test": {"image": test_x, "label": test_y},
    },
    modality="image",
    info={"num_classes": 10},
  )

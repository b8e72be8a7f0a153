"""Random images of any shape: for benchmarks and for building the reference configs' models
at their real input size without the real dataset."""

from __future__ import annotations

import numpy as np

from ssl_jax.data.source import Dataset
from ssl_jax.registry import DATASETS


@DATASETS.register("synthetic")
def synthetic(workdir: str | None = None, image_size: int = 32, channels: int = 3,
              num_classes: int = 10, num_train: int = 512, num_test: int = 64,
              seed: int = 0) -> Dataset:
  """Uniform random images [image_size, image_size, channels] in [0, 1] with random labels.

  Nothing can be learned from them; they exist to measure speed and to check that a config
  builds and trains at the shapes of the dataset it was written for (e.g. 224x224 ImageNet).
  """
  del workdir
  rng = np.random.default_rng(seed)

  def split(n):
    return {"image": rng.random((n, image_size, image_size, channels), dtype=np.float32),
            "label": rng.integers(0, num_classes, n).astype(np.int32)}

  return Dataset(splits={"train": split(num_train), "test": split(num_test)},
                 modality="image", info={"num_classes": num_classes})

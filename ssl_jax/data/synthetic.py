"""Random images of any shape: for benchmarks and for building the reference configs' models
at their real input size without the real dataset."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ssl_jax.data.source import Dataset
from ssl_jax.data.tfds_images import CATALOGUE_SHAPES
from ssl_jax.registry import DATASETS, ConfigError


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


def synthetic_like(data: Mapping[str, Any], num_examples: int = 512) -> dict[str, Any]:
  """A `config.data` for random images of the shape and class count of `data` (a tfds
  catalogue dataset, an image folder with image_size, or synthetic already): lets a config
  written for a real dataset build, train and be benchmarked without it."""
  if data["name"] == "synthetic":
    return {**data, "num_train": num_examples, "num_test": num_examples}
  size, classes = 0, 10
  if data["name"] == "tfds":
    base = data.get("dataset", "cifar10").split("/")[0].split(":")[0]
    size, classes = CATALOGUE_SHAPES.get(base, (0, 10))
  size = data.get("image_size", 0) or size
  if not size:
    raise ConfigError(f"Cannot tell the image size of config.data={dict(data)}; set image_size.")
  return {"name": "synthetic", "image_size": size, "channels": data.get("channels", 3),
          "num_classes": classes, "num_train": num_examples, "num_test": num_examples}

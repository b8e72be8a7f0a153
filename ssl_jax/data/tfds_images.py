"""TFDS image datasets read through `tfds.data_source` (array_record): random access, no TensorFlow.

Prepare a dataset once, in the array_record format, e.g.

  tfds build cifar10 --file_format=array_record --data_dir=~/tensorflow_datasets

(ImageNet needs its archives placed in the manual directory first; see the tfds catalogue.)
Records are fetched a batch at a time and decoded with PIL on a thread pool; images keep uint8
on the host and become float [0, 1] inside the jitted step.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from ssl_jax.data import image_decode
from ssl_jax.data.records import RecordSplit, parallel_map
from ssl_jax.data.source import Dataset
from ssl_jax.errors import DataError, MissingInputError
from ssl_jax.registry import DATASETS

# The catalogue names researchers use, with the splits the SSL papers train and evaluate on.
# "pretrain" is what the trainer iterates over; "train"/"test" feed the probes.
CATALOGUE = {
  "cifar10": {"pretrain": "train", "train": "train", "test": "test"},
  "cifar100": {"pretrain": "train", "train": "train", "test": "test"},
  # STL-10 pretrains on its 100k unlabelled images plus the labelled train split.
  "stl10": {"pretrain": "train+unlabelled", "train": "train", "test": "test"},
  "imagenette": {"pretrain": "train", "train": "train", "test": "validation"},
  "imagenet2012": {"pretrain": "train", "train": "train", "test": "validation"},
}
# (stored image side or None when it varies, classes): what a synthetic stand-in must match.
CATALOGUE_SHAPES = {
  "cifar10": (32, 10),
  "cifar100": (32, 100),
  "stl10": (96, 10),
  "imagenette": (None, 10),
  "imagenet2012": (None, 1000),
}
UNLABELLED = -1


@DATASETS.register("tfds", modality="image")
def tfds_images(
  workdir: str | None = None,
  dataset: str = "cifar10",
  data_dir: str = "",
  image_size: int = 0,
  channels: int = 3,
  pretrain_split: str = "",
  train_split: str = "",
  test_split: str = "",
  image_key: str = "image",
  label_key: str = "label",
  num_threads: int = 16,
) -> Dataset:
  """A prepared tfds image dataset as lazily decoded uint8 [image_size, image_size, channels].

  Args:
    dataset: tfds name, optionally with config/version ("imagenette/320px-v2", "cifar10:3.0.2").
      The catalogue names in `CATALOGUE` have default splits; others need all three splits.
    data_dir: where it was prepared (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    image_size: side to resize (shorter side) and centre-crop to; 0 keeps the stored size,
      which the dataset must declare (cifar10 does, imagenet2012 does not).
    pretrain_split, train_split, test_split: tfds split strings, e.g. "train[:90%]" or
      "train+unlabelled"; "" takes the catalogue default. Records without a label (STL-10's
      unlabelled split) get label -1, which the online probe skips.
    image_key, label_key: feature names of the image and the class label.
    num_threads: decoding threads per batch.
  """
  del workdir
  name = dataset
  import tensorflow_datasets as tfds  # Imported here: a slow import most runs do not need.

  defaults = CATALOGUE.get(name.split("/")[0].split(":")[0], {})
  splits = {
    "pretrain": pretrain_split or defaults.get("pretrain", ""),
    "train": train_split or defaults.get("train", ""),
    "test": test_split or defaults.get("test", ""),
  }
  missing = [key for key, value in splits.items() if not value]
  if missing:
    raise DataError(
      f"tfds dataset {name!r} is not in the catalogue {sorted(CATALOGUE)}; set "
      f"config.data.{{{', '.join(k + '_split' for k in missing)}}}."
    )
  builder = prepared_builder(tfds, name, data_dir)
  features = builder.info.features
  for key in (image_key, label_key):
    if key not in features:
      raise DataError(
        f"tfds dataset {name!r} has no feature {key!r}; features: {sorted(features.keys())}."
      )
  stored = tuple(features[image_key].shape)
  if not image_size and None in stored[:2]:
    raise DataError(
      f"tfds dataset {name!r} has images of varying size {stored}; set "
      "config.data.image_size (e.g. 224) to resize them."
    )
  shape = (image_size, image_size, channels) if image_size else stored[:2] + (channels,)
  open_split = functools.partial(
    _open_split,
    tfds,
    builder,
    name,
    image_key,
    label_key,
    image_size or None,
    channels,
    shape,
    num_threads,
  )
  opened = {key: open_split(value) for key, value in splits.items()}
  label_feature = features[label_key]
  info = {
    "num_classes": int(label_feature.num_classes),
    "tfds_name": name,
    "class_names": list(label_feature.names),
    "splits": splits,
  }
  if splits["pretrain"] == splits["train"]:
    del opened["pretrain"]
    return Dataset(splits=opened, modality="image", train_split="train", info=info)
  return Dataset(splits=opened, modality="image", train_split="pretrain", info=info)


def prepared_builder(tfds, name: str, data_dir: str):
  """The prepared builder, read from its directory (so no catalogue code or TF is needed)."""
  data_dir = os.path.expanduser(
    data_dir or os.environ.get("TFDS_DATA_DIR", "") or "~/tensorflow_datasets"
  )
  base, _, version = name.partition(":")
  root = os.path.join(data_dir, base)
  versions = (
    sorted(
      (entry for entry in os.listdir(root) if entry[:1].isdigit()),
      key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()),
    )
    if os.path.isdir(root)
    else []
  )
  if version:
    versions = [v for v in versions if v == version]
  if not versions:
    raise MissingInputError(
      f"tfds dataset {name!r} is not prepared under {data_dir!r} (looked for {root}/<version>/)."
      f" Prepare it with: tfds build {base.split('/')[0]} --file_format=array_record "
      f"--data_dir={data_dir}"
    )
  return tfds.builder_from_directory(os.path.join(root, versions[-1]))


def open_data_source(builder, name: str, split: str, **options):
  """`builder.as_data_source(split)` with errors that say what to do: rebuild as array_record,
  or pick one of the listed splits."""
  try:
    return builder.as_data_source(split=split, **options)
  except NotImplementedError as error:
    raise DataError(
      f"tfds dataset {name!r} is not stored as array_record, which random access "
      "needs: rebuild it with --file_format=array_record."
    ) from error
  except (ValueError, KeyError) as error:
    raise DataError(
      f"tfds dataset {name!r} has no split {split!r} (splits: "
      f"{sorted(builder.info.splits)}): {error}"
    ) from error


def _open_split(
  tfds,
  builder,
  name: str,
  image_key: str,
  label_key: str,
  size: int | None,
  channels: int,
  shape: tuple[int, ...],
  num_threads: int,
  split: str,
) -> RecordSplit:
  source = open_data_source(builder, name, split, decoders={image_key: tfds.decode.SkipDecoding()})

  def decode(index_and_record) -> np.ndarray:
    index, record = index_and_record
    image = image_decode.decode_image(
      record[image_key], size, channels, name=f"{name} {split} record {index}"
    )
    if image.shape != shape:
      raise DataError(
        f"{name} {split} record {index} decodes to {image.shape}, expected "
        f"{shape}; set config.data.image_size to resize."
      )
    return image

  def read_rows(indices: np.ndarray) -> dict[str, np.ndarray]:
    records = source.__getitems__([int(i) for i in indices])
    images = parallel_map(decode, list(zip(indices, records)), num_threads)
    labels = [record.get(label_key, UNLABELLED) for record in records]
    return {
      "image": np.stack(images) if images else np.zeros((0,) + shape, np.uint8),
      "label": np.asarray(labels, np.int32).reshape(len(records)),
    }

  def read_labels() -> np.ndarray:
    # The image stays encoded (SkipDecoding), so this reads records without decoding pixels.
    labels = []
    for start in range(0, len(source), 1024):
      records = source.__getitems__(list(range(start, min(start + 1024, len(source)))))
      labels += [record.get(label_key, UNLABELLED) for record in records]
    return np.asarray(labels, np.int32)

  return RecordSplit(
    len(source),
    read_rows,
    {"image": (shape, np.uint8), "label": ((), np.int32)},
    read_labels=read_labels,
  )

"""Images in a directory per class, read with PIL (no TensorFlow), decoded a batch at a time.

Two layouts are understood:
  <path>/<class>/<image>                 one pool; a fixed stratified split makes train/test
  <path>/<split>/<class>/<image>         the splits as given (e.g. train/ and val/)
Class names are sorted so label ids do not depend on the file system's order.
"""

from __future__ import annotations

import collections
import functools
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssl_jax.data import image_decode
from ssl_jax.data.records import RecordSplit, parallel_map
from ssl_jax.data.source import Dataset
from ssl_jax.errors import DataError, MissingInputError
from ssl_jax.registry import DATASETS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@DATASETS.register("image_folder", modality="image")
def image_folder(
  workdir: str | None = None,
  path: str = "",
  image_size: int = 0,
  channels: int = 3,
  train_dir: str = "train",
  test_dir: str = "",
  test_fraction: float = 0.2,
  split_seed: int = 0,
  num_threads: int = 16,
) -> Dataset:
  """Labelled images from class directories, as uint8 [image_size, image_size, channels].

  Args:
    path: the root directory (see the module docstring for the two layouts).
    image_size: side every image is resized (shorter side) and centre-cropped to; 0 keeps the
      files' own size, which must then be the same for all.
    channels: 3 for RGB, 1 for grayscale.
    train_dir, test_dir: split subdirectories of `path`; with test_dir="" (and no train_dir
      present) the class directories sit directly under `path` and a stratified
      `test_fraction` split seeded by `split_seed` is held out.
    num_threads: decoding threads per batch.
  """
  del workdir
  if not path or not os.path.isdir(path):
    raise MissingInputError(
      f"config.data.path={path!r} is not a directory of class "
      "directories (<path>/<class>/<image> or <path>/<split>/<class>/...)."
    )
  if test_dir:
    classes = class_names(os.path.join(path, train_dir))
    train_files, train_labels = list_images(os.path.join(path, train_dir), classes)
    test_files, test_labels = list_images(os.path.join(path, test_dir), classes)
  else:
    classes = class_names(path)
    files, labels = list_images(path, classes)
    counts = np.bincount(labels, minlength=len(classes))
    num_test = int(np.ceil(test_fraction * len(files)))
    if not 0 < num_test < len(files):
      raise DataError(
        f"test_fraction={test_fraction} of the {len(files)} images under {path!r} leaves "
        f"{num_test} test and {len(files) - num_test} training images; both need at least one."
      )
    from sklearn.model_selection import train_test_split  # seconds to import: only here

    # Stratified when every class can be in both splits; a tiny folder is split at random.
    stratified = counts.min() >= 2 and min(num_test, len(files) - num_test) >= len(classes)
    stratify = labels if stratified else None
    train_files, test_files, train_labels, test_labels = train_test_split(
      files, labels, test_size=test_fraction, stratify=stratify, random_state=split_seed
    )
  # Every header before any training: a bad file found hours into a run costs the run.
  shape = scan_images(list(train_files) + list(test_files), image_size, channels, num_threads)
  read = functools.partial(
    _read_split, size=image_size or None, channels=channels, shape=shape, num_threads=num_threads
  )
  return Dataset(
    splits={"train": read(train_files, train_labels), "test": read(test_files, test_labels)},
    modality="image",
    info={"num_classes": len(classes), "class_names": classes},
  )


def class_names(root: str) -> list[str]:
  """The sorted subdirectory names of `root`: one per class."""
  if not os.path.isdir(root):
    raise MissingInputError(f"Split directory {root!r} does not exist.")
  names = sorted(
    entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")
  )
  if not names:
    raise DataError(f"{root!r} has no class directories; expected <class>/<image> below it.")
  return names


def list_images(root: str, classes: list[str]) -> tuple[list[str], np.ndarray]:
  """Every image file under root/<class>/ (recursively), sorted, with its class index."""
  present = class_names(root)
  unknown = sorted(set(present) - set(classes))
  if unknown:
    raise DataError(
      f"{root!r} has class directories {unknown} that the train split does not "
      f"have; classes: {classes}."
    )
  empty = [
    os.path.join(root, name)
    for name in present
    if not any(
      f.lower().endswith(IMAGE_EXTENSIONS)
      for _, _, fs in os.walk(os.path.join(root, name))
      for f in fs
    )
  ]
  if empty:
    raise DataError(
      f"Class directories without an image file ({', '.join(IMAGE_EXTENSIONS)}): "
      f"{_listed(empty)}. Remove them or add their images."
    )
  files, labels = [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(root, name)
    found = (
      sorted(
        os.path.join(dirpath, f)
        for dirpath, _, names in os.walk(class_dir)
        for f in names
        if f.lower().endswith(IMAGE_EXTENSIONS)
      )
      if os.path.isdir(class_dir)
      else []
    )
    files += found
    labels += [label] * len(found)
  if not files:
    raise DataError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) under {root!r}.")
  return files, np.asarray(labels, np.int32)


def _header(file: str) -> tuple[int, int] | str:
  """(width, height) from the file's header (PIL reads no pixels), or why it cannot be read."""
  try:
    with Image.open(file) as image:
      image.verify()  # structure checks without decoding
    with Image.open(file) as image:
      return image.size
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
    return f"{type(error).__name__}: {error}"


def _listed(paths: list[str], limit: int = 5) -> str:
  more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
  return ", ".join(paths[:limit]) + more


def scan_images(
  files: list[str], size: int, channels: int, num_threads: int
) -> tuple[int, int, int]:
  """The shape every image decodes to, after reading each file's header: a DataError naming
  the files that cannot be read, or (with size 0) the files whose size differs from the most
  common one."""
  headers = parallel_map(_header, files, num_threads)
  broken = [f"{file} ({header})" for file, header in zip(files, headers) if isinstance(header, str)]
  if broken:
    raise DataError(f"{len(broken)} image files cannot be read: {_listed(broken)}.")
  if size:
    return (size, size, channels)
  sizes = collections.Counter(headers)
  (width, height), _ = sizes.most_common(1)[0]
  if len(sizes) > 1:
    odd = [f"{file} ({w}x{h})" for file, (w, h) in zip(files, headers) if (w, h) != (width, height)]
    raise DataError(
      f"The images have {len(sizes)} different sizes (most are {width}x{height}): "
      f"{_listed(odd)}. Set config.data.image_size to resize them all."
    )
  return (height, width, channels)


def _read_split(
  files: list[str],
  labels: np.ndarray,
  size: int | None,
  channels: int,
  shape: tuple[int, int, int],
  num_threads: int,
) -> RecordSplit:
  files, labels = list(files), np.asarray(labels, np.int32)

  def decode(file: str) -> np.ndarray:
    image = image_decode.decode_image(file, size, channels)
    if image.shape != shape:
      raise DataError(
        f"Image {file} decodes to {image.shape}, but the dataset's images are "
        f"{shape}; set config.data.image_size to resize them all."
      )
    return image

  def read_rows(indices: np.ndarray) -> dict[str, np.ndarray]:
    images = parallel_map(decode, [files[i] for i in indices], num_threads)
    return {
      "image": np.stack(images) if images else np.zeros((0,) + shape, np.uint8),
      "label": labels[indices],
    }

  return RecordSplit(
    len(files),
    read_rows,
    {"image": (shape, np.uint8), "label": ((), np.int32)},
    read_labels=lambda: labels,
  )

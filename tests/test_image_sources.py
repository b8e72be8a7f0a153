"""Image folders and tfds array_record datasets, on small datasets these tests write to disk."""

from __future__ import annotations

import io
import os

import jax
import numpy as np
import pytest
from PIL import Image

from ssl_jax import train
from ssl_jax.config_base import validate_config
from ssl_jax.data import image_decode
from ssl_jax.data.pipeline import ShuffledBatches, batches_in_order
from ssl_jax.data.records import RecordSplit
from ssl_jax.data.source import unit_float_images
from ssl_jax.errors import DataError
from ssl_jax.recipes import digits_config
from ssl_jax.registry import DATASETS, ConfigError


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, "PNG")
  return buffer.getvalue()


def _write(path: str, array: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(_png(array))


def _images(n: int, seed: int, size=(12, 12)) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


# --- Image folders ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory):
  """<root>/{train,val}/{cat,dog}/i.png with known pixels: 6 + 3 per class."""
  root = str(tmp_path_factory.mktemp("folder"))
  images = {}
  for split, count in (("train", 6), ("val", 3)):
    for label, name in enumerate(("cat", "dog")):
      pixels = _images(count, seed=10 * label + count)
      for i, image in enumerate(pixels):
        _write(os.path.join(root, split, name, f"{i:02d}.png"), image)
      images[split, name] = pixels
  return root, images


def test_image_folder_reads_split_layout_exactly(split_folder):
  root, images = split_folder
  dataset = DATASETS.build("image_folder", {"path": root, "test_dir": "val"}, None)
  assert dataset.info["class_names"] == ["cat", "dog"]
  train_split, test_split = dataset.split("train"), dataset.split("test")
  assert train_split["image"].shape == (12, 12, 12, 3) and train_split["image"].dtype == np.uint8
  assert len(test_split["label"]) == 6
  # Sorted files, classes in sorted order: the pixels are exactly the PNGs written (lossless).
  np.testing.assert_array_equal(np.asarray(train_split["label"]), [0] * 6 + [1] * 6)
  np.testing.assert_array_equal(train_split["image"][6:12], images["train", "dog"])
  np.testing.assert_array_equal(
    test_split["image"][np.array([2, 3])],
    np.stack([images["val", "cat"][2], images["val", "dog"][0]]),
  )
  batch = dataset.split("train").take(np.array([7, 0]))
  np.testing.assert_array_equal(batch["label"], [1, 0])
  np.testing.assert_array_equal(batch["image"][1], images["train", "cat"][0])


def test_image_folder_flat_layout_is_a_fixed_stratified_split(tmp_path):
  for label in range(3):
    for i, image in enumerate(_images(10, seed=label)):
      _write(str(tmp_path / f"class_{label}" / f"{i}.png"), image)
  options = {"path": str(tmp_path), "test_fraction": 0.3}
  first = DATASETS.build("image_folder", options, None)
  again = DATASETS.build("image_folder", options, None)
  assert first.num_examples("train") == 21 and first.num_examples("test") == 9
  np.testing.assert_array_equal(np.bincount(np.asarray(first.split("test")["label"])), [3, 3, 3])
  np.testing.assert_array_equal(first.split("test")["image"][:], again.split("test")["image"][:])


def test_image_folder_resizes_varying_sizes_and_converts_channels(tmp_path):
  # A 30x20 image with a left/right split of colours, and a grayscale 16x16 image.
  wide = np.zeros((20, 30, 3), np.uint8)
  wide[:, :15] = (255, 0, 0)
  wide[:, 15:] = (0, 0, 255)
  _write(str(tmp_path / "a" / "wide.png"), wide)
  os.makedirs(tmp_path / "b")
  Image.fromarray(np.full((16, 16), 77, np.uint8)).save(str(tmp_path / "b" / "gray.png"))
  dataset = DATASETS.build(
    "image_folder", {"path": str(tmp_path), "image_size": 10, "test_fraction": 0.5}, None
  )
  images = np.concatenate([dataset.split("train")["image"][:], dataset.split("test")["image"][:]])
  labels = np.concatenate([np.asarray(dataset.split(s)["label"]) for s in ("train", "test")])
  wide_out, gray_out = images[labels == 0][0], images[labels == 1][0]
  assert images.shape[1:] == (10, 10, 3)
  # Shorter side 20 -> 10, centre crop of the 15-wide result keeps both colours.
  np.testing.assert_array_equal(wide_out[5, 0], (255, 0, 0))
  np.testing.assert_array_equal(wide_out[5, -1], (0, 0, 255))
  np.testing.assert_array_equal(gray_out, np.full((10, 10, 3), 77))


def test_image_folder_errors_name_the_problem(tmp_path, split_folder):
  with pytest.raises(FileNotFoundError, match="not a directory"):
    DATASETS.build("image_folder", {"path": str(tmp_path / "missing")}, None)
  (tmp_path / "empty_class").mkdir()
  with pytest.raises(DataError, match="without an image file.*empty_class"):
    DATASETS.build("image_folder", {"path": str(tmp_path)}, None)
  # Found when the dataset is built (headers are scanned), not when a batch first reads it.
  bad = tmp_path / "bad"
  _write(str(bad / "x" / "good.png"), _images(1, 0)[0])
  _write(str(bad / "x" / "good2.png"), _images(1, 1)[0])
  (bad / "x" / "broken.png").write_bytes(b"not a png at all")
  with pytest.raises(DataError, match=r"1 image files cannot be read: \S*broken.png"):
    DATASETS.build("image_folder", {"path": str(bad), "test_fraction": 0.34}, None)
  (bad / "x" / "broken.png").unlink()
  _write(str(bad / "x" / "wide.png"), np.zeros((12, 20, 3), np.uint8))
  with pytest.raises(
    DataError, match=r"2 different sizes \(most are 12x12\): \S*wide.png \(20x12\)"
  ):
    DATASETS.build("image_folder", {"path": str(bad), "test_fraction": 0.34}, None)
  # A file whose header reads but whose pixels do not still names itself when decoded.
  dataset = DATASETS.build("image_folder", {"path": str(bad), "image_size": 8}, None)
  with open(bad / "x" / "good.png", "r+b") as f:
    f.truncate(60)
  with pytest.raises(image_decode.CorruptImageError, match="good.png"):
    for split in ("train", "test"):
      dataset.split(split)["image"][:]
  root, _ = split_folder
  config = digits_config("simclr")
  config.data = {"name": "image_folder", "path": str(tmp_path / "nowhere")}
  with pytest.raises(ConfigError, match="nowhere"):
    validate_config(config)


def test_uint8_sources_feed_the_model_the_same_as_floats():
  """A uint8 batch becomes exactly the float batch /255 inside jit (one code path for both)."""
  pixels = _images(4, 3)
  as_float = unit_float_images({"image": pixels.astype(np.float32) / 255.0, "label": 1})
  converted = jax.jit(lambda b: unit_float_images(b)["image"])({"image": pixels})
  np.testing.assert_allclose(np.asarray(converted), as_float["image"], rtol=0, atol=1e-7)
  assert converted.dtype == np.float32


def test_record_split_behaves_like_arrays_in_the_pipelines():
  images = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)
  labels = np.arange(10, dtype=np.int32) % 3
  reads = []

  def read_rows(indices):
    reads.append(len(indices))
    return {"image": images[indices], "label": labels[indices]}

  split = RecordSplit(10, read_rows, {"image": ((2, 2, 1), np.uint8), "label": ((), np.int32)})
  in_memory = {"image": images, "label": labels}
  lazy_batches, array_batches = ShuffledBatches(split, 4, seed=3), ShuffledBatches(in_memory, 4, 3)
  for _ in range(5):
    lazy, eager = next(lazy_batches), next(array_batches)
    np.testing.assert_array_equal(lazy["image"], eager["image"])
    np.testing.assert_array_equal(lazy["label"], eager["label"])
  assert reads == [4] * 5  # One read per batch for both columns.
  ordered = list(batches_in_order(split, 4))
  assert [valid for _, valid in ordered] == [4, 4, 2]
  np.testing.assert_array_equal(ordered[-1][0]["image"][:2], images[8:])
  assert not ordered[-1][0]["image"][2:].any()
  with pytest.raises(IndexError, match=r"\[0, 10\)"):
    split.take(np.array([10]))


@pytest.mark.e2e
def test_training_on_an_image_folder_end_to_end(tmp_path):
  """Digits written as PNG files train and evaluate through the uint8 path."""
  from sklearn.datasets import load_digits

  images, labels = load_digits(return_X_y=True)
  images = np.round(images.reshape(-1, 8, 8, 1) / 16 * 255).astype(np.uint8)
  for i in range(120):
    _write(str(tmp_path / "digits" / str(labels[i]) / f"{i:04d}.png"), images[i])
  config = digits_config("simclr")
  config.data = {
    "name": "image_folder",
    "path": str(tmp_path / "digits"),
    "channels": 1,
    "test_fraction": 0.25,
  }
  config.update(total_steps=3, batch_size=32, log_every=1, checkpoint_every=3, eval_batch_size=32)
  config.model_kwargs.width = 8
  config.evals = {"knn": {"feature_sets": ("trained",)}}
  results = train.train_and_evaluate(config, str(tmp_path / "work"))
  assert results["step"] == 3
  assert 0.0 <= results["evals"]["knn"]["simclr"]["knn acc (k=20)"] <= 1.0


# --- tfds array_record -----------------------------------------------------------------------


def _builder_class(name: str, splits: dict[str, tuple[int, int]], size, labelled=True):
  """A tfds builder named `name` that writes PNG-encoded images (as the catalogue's do)."""
  import tensorflow_datasets as tfds

  builder_name = name

  class TinyBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    name = builder_name
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(
          {
            "image": tfds.features.Image(shape=size),
            "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
          }
        ),
      )

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(split, *spec) for split, spec in splits.items()}

    def _generate_examples(self, split, count, seed):
      shape = (size[0] or 9 + seed % 5, size[1] or 11, 3)
      rng = np.random.default_rng(seed)
      for i in range(count):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        label = -1 if split == "unlabelled" else i % 3
        yield i, {"image": _png(image), "label": label}

  return TinyBuilder


def _expected_images(count: int, seed: int, shape) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return np.stack([rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)])


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  for name, splits, size in (
    ("cifar10", {"train": (10, 1), "test": (4, 2)}, (8, 8, 3)),
    ("stl10", {"train": (6, 3), "test": (3, 4), "unlabelled": (5, 5)}, (8, 8, 3)),
    ("imagenette", {"train": (4, 6), "validation": (3, 7)}, (None, None, 3)),
  ):
    _builder_class(name, splits, size)(
      data_dir=data_dir, file_format="array_record"
    ).download_and_prepare()
  return data_dir


def test_tfds_catalogue_name_reads_array_record_records_exactly(tfds_dir):
  dataset = DATASETS.build("tfds", {"dataset": "cifar10", "data_dir": tfds_dir}, None)
  assert dataset.train_split == "train" and dataset.info["num_classes"] == 3
  train_split = dataset.split("train")
  assert train_split["image"].shape == (10, 8, 8, 3) and train_split["image"].dtype == np.uint8
  # tfds shuffles records when it writes them; match each decoded image to a generated one.
  expected = _expected_images(10, 1, (8, 8, 3))
  decoded = train_split["image"][:]
  labels = np.asarray(train_split["label"])
  for image, label in zip(decoded, labels):
    match = [i for i, e in enumerate(expected) if np.array_equal(e, image)]
    assert len(match) == 1 and match[0] % 3 == label
  assert dataset.num_examples("test") == 4


def test_tfds_stl10_pretrains_on_unlabelled_plus_train(tfds_dir):
  dataset = DATASETS.build("tfds", {"dataset": "stl10", "data_dir": tfds_dir}, None)
  assert dataset.train_split == "pretrain"
  assert dataset.num_examples("pretrain") == 11 and dataset.num_examples("train") == 6
  labels = np.asarray(dataset.split("pretrain")["label"])
  assert (labels == -1).sum() == 5 and set(labels[labels >= 0]) == {0, 1, 2}


def test_tfds_varying_sizes_need_image_size(tfds_dir):
  with pytest.raises(ValueError, match="image_size"):
    DATASETS.build("tfds", {"dataset": "imagenette", "data_dir": tfds_dir}, None)
  dataset = DATASETS.build(
    "tfds", {"dataset": "imagenette", "data_dir": tfds_dir, "image_size": 6}, None
  )
  assert dataset.split("test")["image"][:].shape == (3, 6, 6, 3)


def test_tfds_errors_say_how_to_prepare_and_list_splits(tfds_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="tfds build cifar100 --file_format=array_record"):
    DATASETS.build("tfds", {"dataset": "cifar100", "data_dir": str(tmp_path)}, None)
  with pytest.raises(ValueError, match=r"no split 'nope'.*\['test', 'train'\]"):
    DATASETS.build("tfds", {"dataset": "cifar10", "data_dir": tfds_dir, "test_split": "nope"}, None)
  with pytest.raises(ValueError, match="not in the catalogue"):
    DATASETS.build("tfds", {"dataset": "my_images", "data_dir": tfds_dir}, None)


@pytest.mark.e2e
def test_training_on_a_tfds_dataset_with_the_online_probe(tfds_dir, tmp_path):
  """STL-10's layout end to end: pretrain over labelled + unlabelled records, the online probe
  learns from the labelled ones only, and its test accuracy is reported."""
  config = digits_config("simclr")
  config.data = {"name": "tfds", "dataset": "stl10", "data_dir": tfds_dir}
  config.update(
    total_steps=2,
    batch_size=8,
    log_every=1,
    checkpoint_every=2,
    eval_batch_size=8,
    online_probe=True,
  )
  config.model_kwargs.width = 8
  config.evals = {"online_probe": {}}
  results = train.train_and_evaluate(config, str(tmp_path / "work"))
  assert results["step"] == 2
  accuracy = results["evals"]["online_probe"]["simclr"]["online probe acc"]
  assert accuracy * 3 == pytest.approx(round(accuracy * 3))  # a fraction of the 3 test images

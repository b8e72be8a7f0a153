"""Random images of any shape and random token rows of any length and vocabulary: for
benchmarks and for building the reference configs' models at their real input size without
the real dataset."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.packing import pack_documents
from ssl_jax.data.source import Dataset
from ssl_jax.data.tfds_images import CATALOGUE_SHAPES
from ssl_jax.registry import DATASETS, ConfigError


@DATASETS.register("synthetic", modality="image")
def synthetic(
  workdir: str | None = None,
  image_size: int = 32,
  channels: int = 3,
  num_classes: int = 10,
  num_train: int = 512,
  num_test: int = 64,
  seed: int = 0,
) -> Dataset:
  """Uniform random images [image_size, image_size, channels] in [0, 1] with random labels.

  Nothing can be learned from them; they exist to measure speed and to check that a config
  builds and trains at the shapes of the dataset it was written for (e.g. 224x224 ImageNet).
  """
  del workdir
  rng = np.random.default_rng(seed)

  def split(n):
    return {
      "image": rng.random((n, image_size, image_size, channels), dtype=np.float32),
      "label": rng.integers(0, num_classes, n).astype(np.int32),
    }

  return Dataset(
    splits={"train": split(num_train), "test": split(num_test)},
    modality="image",
    info={"num_classes": num_classes},
  )


@DATASETS.register("synthetic_text", modality="text")
def synthetic_text(
  workdir: str | None = None,
  seq_len: int = 128,
  vocab_size: int = 1000,
  extra_ids: int = 0,
  num_train: int = 64,
  num_test: int = 16,
  seed: int = 0,
) -> Dataset:
  """Packed rows of random documents: `num_train` / `num_test` rows of `seq_len` tokens.

  Documents of 8 to 2 x seq_len uniform random text tokens are packed exactly as real text is
  (BOS/EOS around each, segment ids, per-document positions), and the info has the ids every
  text task needs, with the same special ids as the sentencepiece tokenizer and `extra_ids`
  sentinels at the end of the vocabulary. One id in four begins a word (for whole-word
  masking). Like `synthetic`, it measures speed; there is nothing to learn.
  """
  del workdir
  text_vocab_size = vocab_size - extra_ids
  if text_vocab_size <= tok.MASK_ID + 1:
    raise ConfigError(
      f"synthetic_text: vocab_size={vocab_size} with extra_ids={extra_ids} "
      f"leaves no text tokens; the first {tok.MASK_ID + 1} ids are special."
    )
  rng = np.random.default_rng(seed)

  def split(rows: int, order_seed: int) -> dict[str, np.ndarray]:
    documents, tokens = [], 0
    while tokens < rows * seq_len:
      length = int(rng.integers(8, 2 * seq_len + 1))
      documents.append(rng.integers(tok.MASK_ID + 1, text_vocab_size, length).tolist())
      tokens += length + 2
    packed = pack_documents(
      documents, seq_len, order_seed, pad_id=tok.PAD_ID, bos_id=tok.CLS_ID, eos_id=tok.SEP_ID
    )
    return {key: value[:rows] for key, value in packed.items()}

  special_ids = (tok.PAD_ID, tok.CLS_ID, tok.SEP_ID, tok.MASK_ID)
  word_start = np.arange(vocab_size) % 4 == 0
  word_start[list(special_ids) + [tok.UNK_ID]] = True
  word_start[text_vocab_size:] = True
  special_tokens = {
    "[PAD]": tok.PAD_ID,
    "[UNK]": tok.UNK_ID,
    "[CLS] (bos)": tok.CLS_ID,
    "[SEP] (eos)": tok.SEP_ID,
    "[MASK]": tok.MASK_ID,
  }
  if extra_ids:
    special_tokens[f"<extra_id_0..{extra_ids - 1}>"] = [vocab_size - 1, text_vocab_size]
  return Dataset(
    splits={"train": split(num_train, seed), "test": split(num_test, seed + 1)},
    modality="text",
    info={
      "vocab_size": vocab_size,
      "text_vocab_size": text_vocab_size,
      "extra_ids": extra_ids,
      "tokenizer_path": "",
      "special_tokens": special_tokens,
      "pad_id": tok.PAD_ID,
      "cls_id": tok.CLS_ID,
      "sep_id": tok.SEP_ID,
      "bos_id": tok.CLS_ID,
      "eos_id": tok.SEP_ID,
      "mask_id": tok.MASK_ID,
      "special_ids": special_ids,
      "word_start": word_start,
    },
  )


TEXT_SOURCES = ("python_text", "text_files", "tfds_text", "synthetic_text")


def synthetic_like(data: Mapping[str, Any], num_examples: int = 512) -> dict[str, Any]:
  """A `config.data` for random data shaped like `data`: images of the shape and class count
  of a tfds catalogue dataset or an image folder with image_size; token rows of the sequence
  length, vocabulary and sentinel count of a text source. Lets a config written for a real
  dataset build, train and be benchmarked without it."""
  if data["name"] in TEXT_SOURCES:
    return {
      "name": "synthetic_text",
      "seq_len": data.get("seq_len", 128),
      "vocab_size": data.get("vocab_size", 1000),
      "extra_ids": data.get("extra_ids", 0),
      "num_train": num_examples,
      "num_test": num_examples,
    }
  if data["name"] == "synthetic":
    return {**data, "num_train": num_examples, "num_test": num_examples}
  size, classes = 0, 10
  if data["name"] == "tfds":
    base = data.get("dataset", "cifar10").split("/")[0].split(":")[0]
    size, classes = CATALOGUE_SHAPES.get(base, (0, 10))
  size = data.get("image_size", 0) or size
  if not size:
    raise ConfigError(f"Cannot tell the image size of config.data={dict(data)}; set image_size.")
  return {
    "name": "synthetic",
    "image_size": size,
    "channels": data.get("channels", 3),
    "num_classes": classes,
    "num_train": num_examples,
    "num_test": num_examples,
  }

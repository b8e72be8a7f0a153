"""Labelled pairs of texts for sentence-pair classification: `[CLS] A [SEP] B [SEP]` rows.

  config.data = {"name": "python_same_package"}                        # offline default
  config.data = {"name": "text_pair_files", "paths": "/data/pairs.jsonl",
                 "text_a_key": "sentence1", "text_b_key": "sentence2", "label_key": "label"}

Rows are BERT's pair layout; token types are not stored, they follow from it (0 through the
first [SEP], 1 after: `tasks.classification.pair_token_types`). A pair too long for its row
loses tokens from the end of the longer text first, one at a time (Hugging Face's
`longest_first`), so both texts keep their beginnings; every row holds at least one token of
each text.

`python_same_package` asks whether two docstrings come from the same one of `python_packages`'
ten standard-library packages. Docstrings are split into train / validation / test exactly as
in `python_packages` (so a test docstring was held out of every `python_text` pretraining run
too), and pairs are made within a split only: each docstring is paired once with a random
docstring of its package (label "same") and once with one of another package ("different"),
so the classes are balanced and chance is 50%.

`text_pair_files` reads the user's CSV (header row) or JSONL pairs with the same checks as
`text_classification_files`: a missing column or field names the file and line, and rows
without a label are an error or, with `missing_labels="drop"`, left out and counted.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Sequence

import numpy as np

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_classification import (
  PACKAGES,
  labelled_text_dataset,
  package_examples,
  read_labelled_files,
  split_examples,
)
from ssl_jax.data.text_corpus import TokenizerSpec, corpus_tokenizer, vocabulary_info
from ssl_jax.errors import ConfigError, DataError
from ssl_jax.registry import DATASETS

SEPARATOR = "\x1f"  # joins a pair's two texts into one example text (ASCII unit separator)
PAIR_CLASSES = ("different", "same")


def fit_pair(a: list[int], b: list[int], room: int) -> tuple[list[int], list[int]]:
  """Both piece lists cut to `room` pieces together, the longer losing its last piece first."""
  a, b = list(a), list(b)
  while len(a) + len(b) > room:
    (a if len(a) > len(b) else b).pop()
  return a, b


def encode_pair_rows(
  tokenizer: tok.TextTokenizer, texts: Sequence[str], seq_len: int
) -> np.ndarray:
  """[N, seq_len] int32 rows `[CLS] A [SEP] B [SEP]` of texts "A<SEPARATOR>B"."""
  if seq_len < 5:
    raise DataError(f"seq_len={seq_len}: a pair row needs at least 5 tokens.")
  halves = [text.split(SEPARATOR, 1) for text in texts]
  flat = tokenizer.encode([side for pair in halves for side in pair])
  rows = np.full((len(texts), seq_len), tokenizer.pad_id, np.int32)
  for i in range(len(texts)):
    a, b = fit_pair(
      flat[2 * i] or [tokenizer.stand_in_id],
      flat[2 * i + 1] or [tokenizer.stand_in_id],
      seq_len - 3,
    )
    row = [tokenizer.cls_id, *a, tokenizer.sep_id, *b, tokenizer.sep_id]
    rows[i, : len(row)] = row
  return rows


def package_pairs(
  by_split: dict[str, list[tuple[str, int]]], seed: int
) -> dict[str, list[tuple[str, int]]]:
  """{split: [("A<SEPARATOR>B", same?)]}: each docstring with one random docstring of its own
  package and one of another, within its split."""
  pairs = {}
  for offset, (split, rows) in enumerate(by_split.items()):
    rng = random.Random(seed * 1009 + offset)
    members = collections.defaultdict(list)
    for text, label in rows:
      members[label].append(text)
    made = []
    for text, label in rows:
      same = [other for other in members[label] if other != text]
      others = [c for c in members if c != label]
      if not same or not others:
        continue
      made.append((text + SEPARATOR + rng.choice(same), 1))
      made.append((text + SEPARATOR + rng.choice(members[rng.choice(others)]), 0))
    rng.shuffle(made)
    pairs[split] = made
  return pairs


@DATASETS.register("python_same_package", modality="text")
def python_same_package(
  workdir: str | None = None,
  seq_len: int = 128,
  vocab_size: int = 2000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  test_percent: int = 10,
  validation_percent: int = 10,
  seed: int = 0,
) -> Dataset:
  """Pairs of docstrings, labelled "same" / "different" package (see the module docstring)."""
  by_split = split_examples(
    package_examples(), PACKAGES, test_percent, validation_percent, "python_same_package"
  )
  pairs = package_pairs(by_split, seed)
  if not pairs["train"] or not pairs["test"]:
    raise DataError(f"python_same_package: test_percent={test_percent} leaves no test pair.")
  spec = TokenizerSpec(workdir, vocab_size, tokenizer_path, tokenizer_type, "python_same_package")
  tokenizer = corpus_tokenizer([text for text, _ in by_split["train"]], spec)
  splits = {
    split: {
      "tokens": encode_pair_rows(tokenizer, [text for text, _ in rows], seq_len),
      "label": np.asarray([label for _, label in rows], np.int32),
    }
    for split, rows in pairs.items()
    if rows
  }
  return Dataset(
    splits=splits,
    modality="text",
    info={
      "num_classes": 2,
      "class_names": list(PAIR_CLASSES),
      "class_counts": {
        split: np.bincount(rows["label"], minlength=2).tolist() for split, rows in splits.items()
      },
      "num_token_types": 2,
      **vocabulary_info(tokenizer),
    },
  )


@DATASETS.register("text_pair_files", modality="text")
def text_pair_files(
  workdir: str | None = None,
  paths: str = "",
  text_a_key: str = "text_a",
  text_b_key: str = "text_b",
  label_key: str = "label",
  seq_len: int = 128,
  vocab_size: int = 4000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  test_percent: int = 10,
  validation_percent: int = 10,
  missing_labels: str = "error",
) -> Dataset:
  """The user's labelled pairs: CSV files with a header row or JSONL files (comma-separated
  paths or globs), one pair per row, split by row name as `text_classification_files` does;
  labels are the sorted distinct label strings."""
  if text_a_key == text_b_key:
    raise ConfigError(f"config.data.text_a_key and text_b_key are both {text_a_key!r}.")
  spec = TokenizerSpec(workdir, vocab_size, tokenizer_path, tokenizer_type, "text_pair_files")
  dataset = labelled_text_dataset(
    read_labelled_files(paths, (text_a_key, text_b_key), label_key, missing_labels, SEPARATOR),
    spec,
    seq_len,
    test_percent,
    validation_percent,
    encode=encode_pair_rows,
    tokenizer_text=lambda text: text.replace(SEPARATOR, "\n"),
  )
  return Dataset(
    splits=dataset.splits, modality="text", info={**dataset.info, "num_token_types": 2}
  )

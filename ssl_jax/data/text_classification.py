"""Labelled text for downstream tasks: one example per document, `[CLS] text [SEP]` cut or
padded to `seq_len` tokens, with an integer label.

  config.data = {"name": "python_packages"}                        # offline default
  config.data = {"name": "text_classification_files", "paths": "/data/reviews.csv",
                 "text_key": "text", "label_key": "label"}           # CSV or JSONL

`python_packages` asks which of ten standard-library packages a docstring comes from. The
documents are those of `python_text` (module, class and function docstrings of 40+
characters, read with `ast`), and the test split is chosen by the same hash of the document's
name, so a test docstring was also held out of the `python_text` pretraining. A second hash
holds out `validation_percent` of the rest for early stopping. Copies of one docstring
(inherited or repeated ones) are one example (`split_examples`). Class balance on Python 3.11:
asyncio 283, email 269, importlib 255, logging 223, xml 201, multiprocessing 155, unittest
149, http 122, urllib 97, encodings 96 (1,850 examples: 1,492 train, 193 validation, 165
test); the most frequent class is 15.3% of them.

Examples are not packed: one row is one document, so a row's label is the document's.
"""

from __future__ import annotations

import collections
import csv
import json
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.python_text import python_documents
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import (
  TokenizerSpec,
  corpus_tokenizer,
  is_test_document,
  vocabulary_info,
)
from ssl_jax.data.text_files import document_names, list_files
from ssl_jax.errors import ConfigError, DataError
from ssl_jax.registry import DATASETS

PACKAGES = (
  "asyncio",
  "email",
  "importlib",
  "logging",
  "xml",
  "multiprocessing",
  "unittest",
  "http",
  "urllib",
  "encodings",
)
SPLITS = ("train", "validation", "test")


def is_validation_document(name: str, validation_percent: int) -> bool:
  """A second stable hash (independent of `is_test_document`) for the validation split."""
  return zlib.crc32(f"{name}#validation".encode()) % 100 < validation_percent


def encode_rows(tokenizer: tok.TextTokenizer, texts: Sequence[str], seq_len: int) -> np.ndarray:
  """[N, seq_len] int32: [CLS] + the first seq_len - 2 pieces + [SEP], then padding."""
  rows = np.full((len(texts), seq_len), tokenizer.pad_id, np.int32)
  for i, ids in enumerate(tokenizer.encode(list(texts))):
    row = [tokenizer.cls_id] + ids[: seq_len - 2] + [tokenizer.sep_id]
    rows[i, : len(row)] = row
  return rows


def split_examples(
  examples: Sequence[tuple[str, str, str | None]],
  classes: Sequence[str],
  test_percent: int,
  validation_percent: int,
  corpus_name: str,
) -> dict[str, list[tuple[str, int]]]:
  """{split: [(text, label index)]} with every distinct text in exactly one split.

  Copies of one text (an inherited docstring, a repeated review) are one example: it is a
  test example only if every copy's name hashes to test (so no copy was in the pretraining
  data either), and a text whose labelled copies disagree is dropped. A copy with label None
  is an unlabelled occurrence elsewhere in the corpus: it only takes part in that decision.
  """
  index = {name: i for i, name in enumerate(classes)}
  copies: dict[str, list[tuple[str, str | None]]] = collections.defaultdict(list)
  for name, text, label in examples:
    if label is not None and label not in index:
      raise DataError(
        f"{corpus_name}: example {name!r} has label {label!r}, not one of {list(classes)}."
      )
    copies[text].append((name, label))
  by_split: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
  for text, named in copies.items():
    labels = {label for _, label in named if label is not None}
    if len(labels) != 1:
      continue
    names = [name for name, _ in named]
    split = (
      "test"
      if all(is_test_document(name, test_percent) for name in names)
      else "validation"
      if is_validation_document(names[0], validation_percent)
      else "train"
    )
    by_split[split].append((text, index[labels.pop()]))
  return by_split


def labelled_text_dataset(
  examples: Sequence[tuple[str, str, str]],
  spec: TokenizerSpec,
  seq_len: int,
  test_percent: int,
  validation_percent: int,
  classes: Sequence[str] | None = None,
  encode: Callable[[tok.TextTokenizer, Sequence[str], int], np.ndarray] = encode_rows,
  tokenizer_text: Callable[[str], str] = lambda text: text,
) -> Dataset:
  """Splits (name, text, label) examples with `split_examples` into train / validation / test
  and tokenizes them (with the pretraining tokenizer when `tokenizer_path` is given).

  `classes` fixes the label order (default: the sorted label names); `encode` makes the rows
  of example texts and `tokenizer_text` the text a new tokenizer trains on (text pairs:
  `data.text_pairs`)."""
  if seq_len < 3:
    raise DataError(f"seq_len must be at least 3 ([CLS], a token, [SEP]); got {seq_len}.")
  classes = (
    list(classes)
    if classes is not None
    else sorted({label for _, _, label in examples if label is not None})
  )
  by_split = split_examples(examples, classes, test_percent, validation_percent, spec.corpus_name)
  counts = {
    split: collections.Counter(label for _, label in rows) for split, rows in by_split.items()
  }
  missing = [classes[c] for c in range(len(classes)) if counts["train"][c] == 0]
  if missing:
    raise DataError(
      f"{spec.corpus_name}: no training example of classes {missing}; every class needs at least one."
    )
  if not by_split["test"]:
    raise DataError(f"{spec.corpus_name}: test_percent={test_percent} leaves no test example.")
  tokenizer = corpus_tokenizer([tokenizer_text(text) for text, _ in by_split["train"]], spec)
  splits = {
    split: {
      "tokens": encode(tokenizer, [text for text, _ in rows], seq_len),
      "label": np.asarray([label for _, label in rows], np.int32),
    }
    for split, rows in by_split.items()
    if rows
  }
  return Dataset(
    splits=splits,
    modality="text",
    info={
      "num_classes": len(classes),
      "class_names": classes,
      "class_counts": {split: [counts[split][c] for c in range(len(classes))] for split in splits},
      **vocabulary_info(tokenizer),
    },
  )


def package_of(name: str) -> str | None:
  """The top-level package of a `python_text` document name ("asyncio/events.py:...")."""
  path = name.split(":", 1)[0]
  return path.split("/", 1)[0] if "/" in path else None


@DATASETS.register("python_packages", modality="text")
def python_packages(
  workdir: str | None = None,
  seq_len: int = 64,
  vocab_size: int = 2000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  test_percent: int = 10,
  validation_percent: int = 10,
) -> Dataset:
  """Docstrings of ten standard-library packages, labelled by package (see the module doc).

  Pass the pretraining run's tokenizer as `tokenizer_path` (a pretraining checkpoint's
  `config.json` names it) so the fine-tuned model reads the pieces it was trained on.
  """
  spec = TokenizerSpec(workdir, vocab_size, tokenizer_path, tokenizer_type, "python_packages")
  return labelled_text_dataset(
    package_examples(), spec, seq_len, test_percent, validation_percent, classes=PACKAGES
  )


def package_examples() -> list[tuple[str, str, str | None]]:
  """(name, text, package) for the docstrings of the ten packages, plus (name, text, None) for
  every copy of one of their texts elsewhere in the corpus (see `split_examples`)."""
  documents = python_documents(True)
  labelled = {text for name, text in documents if package_of(name) in PACKAGES}
  return [
    (name, text, package_of(name) if package_of(name) in PACKAGES else None)
    for name, text in documents
    if text in labelled
  ]


MISSING_LABELS = ("error", "drop")


def read_labelled(
  path: str,
  name: str,
  text_keys: str | Sequence[str],
  label_key: str,
  missing_labels: str = "error",
  joiner: str = "\n",
) -> tuple[list[tuple[str, str, str]], int]:
  """((name, text, label) rows, number of rows dropped for a missing label) of one .csv
  (header row) or .jsonl file; rows are named "<name>:<line>" (`name` from
  `text_files.document_names`). Several `text_keys` (a text pair) are joined by `joiner`;
  a row with an empty text is left out.

  A row whose label is missing, empty or null is a DataError naming the file and line, or,
  with `missing_labels="drop"`, left out and counted."""
  text_keys = (text_keys,) if isinstance(text_keys, str) else tuple(text_keys)
  rows, dropped = [], 0
  try:
    with open(path, encoding="utf-8", newline="") as f:
      if path.endswith(".csv"):
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        missing = [key for key in (*text_keys, label_key) if key not in fields]
        if missing:
          raise DataError(
            f"{path} has no column {missing[0]!r} (columns: {fields}); set "
            f"config.data.{'text_key' if len(text_keys) == 1 else 'text_a_key / text_b_key'}"
            " / label_key."
          )
        records = list(enumerate(reader, 2))
      elif path.endswith(".jsonl"):
        records = []
        for number, line in enumerate(f, 1):
          if not line.strip():
            continue
          try:
            records.append((number, json.loads(line)))
          except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number} is not valid JSON: {error}") from error
      else:
        raise DataError(f"{path}: labelled text must be a .csv or .jsonl file.")
  except UnicodeDecodeError as error:
    raise DataError(f"{path} is not UTF-8 text: {error}") from error
  for number, record in records:
    if not isinstance(record, dict) or any(key not in record for key in text_keys):
      keys = sorted(record) if isinstance(record, dict) else type(record).__name__
      *others, last = [repr(key) for key in (*text_keys, label_key)]
      raise DataError(f"{path}:{number} needs fields {', '.join(others)} and {last} (has {keys}).")
    label = record.get(label_key)
    if label is None or (isinstance(label, str) and not label.strip()):
      if missing_labels == "drop":
        dropped += 1
        continue
      what = "no" if label_key not in record else "a null" if label is None else "an empty"
      raise DataError(
        f"{path}:{number} has {what} label ({label_key!r}: {label!r}). Fix the row, or set "
        "config.data.missing_labels='drop' to leave such rows out."
      )
    texts = [record[key] for key in text_keys]
    if all(text is not None and str(text).strip() for text in texts):
      rows.append((f"{name}:{number}", joiner.join(map(str, texts)), str(label).strip()))
  return rows, dropped


def read_labelled_files(
  paths: str,
  text_keys: str | Sequence[str],
  label_key: str,
  missing_labels: str,
  joiner: str = "\n",
) -> list[tuple[str, str, str]]:
  """The (name, text, label) rows of every file `paths` names (`read_labelled` on each); says
  how many rows `missing_labels="drop"` left out."""
  if missing_labels not in MISSING_LABELS:
    raise ConfigError(
      f"config.data.missing_labels={missing_labels!r}; valid: {list(MISSING_LABELS)}."
    )
  examples, dropped = [], 0
  for path, name in document_names(list_files(paths)).items():
    rows, unlabelled = read_labelled(path, name, text_keys, label_key, missing_labels, joiner)
    examples += rows
    dropped += unlabelled
  if dropped:
    print(f"Dropped {dropped} rows without a label (config.data.missing_labels='drop').")
  if not examples:
    raise DataError(f"No labelled rows in config.data.paths={paths!r}.")
  return examples


@DATASETS.register("text_classification_files", modality="text")
def text_classification_files(
  workdir: str | None = None,
  paths: str = "",
  text_key: str = "text",
  label_key: str = "label",
  seq_len: int = 128,
  vocab_size: int = 4000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  test_percent: int = 10,
  validation_percent: int = 10,
  missing_labels: str = "error",
) -> Dataset:
  """The user's labelled text: CSV files with a header row or JSONL files (comma-separated
  paths or globs), one example per row; labels are the sorted distinct label strings.

  `missing_labels`: "error" (a row with a missing, empty or null label stops the run, naming
  the file and line) or "drop" (such rows are left out; how many is printed)."""
  spec = TokenizerSpec(
    workdir, vocab_size, tokenizer_path, tokenizer_type, "text_classification_files"
  )
  examples = read_labelled_files(paths, text_key, label_key, missing_labels)
  return labelled_text_dataset(examples, spec, seq_len, test_percent, validation_percent)

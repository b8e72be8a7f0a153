"""Sentence-pair pretraining data (NSP / SOP rows, `ssl_jax.data.sentence_pairs`) from the
embedded Python text or the user's text files.

  config.data = {"name": "python_pairs", "objective": "sop", "seq_len": 64}
  config.data = {"name": "text_file_pairs", "paths": "/data/books/*.txt", "format": "file"}

Documents are split into train and test by the same hash of their name as `python_text` and
`text_files` (so a test document of one is a test document of the other, and of the
`python_packages` downstream task), then into sentences by `split_sentences`. Pairs are built
within a split only: a random "next sentence" of a train pair comes from a train document.
The sentencepiece tokenizer is trained on the train documents' lines exactly as for the
packed corpora (or loaded from `tokenizer_path`), so an NSP/SOP run and a plain MLM run share
their vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

from ssl_jax.data.python_text import python_documents
from ssl_jax.data.sentence_pairs import PAIR_OBJECTIVES, build_pairs, pair_rows, split_sentences
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import (
  TokenizerSpec,
  corpus_tokenizer,
  is_test_document,
  vocabulary_info,
)
from ssl_jax.data.text_files import FORMATS, document_names, list_files, read_documents
from ssl_jax.errors import ConfigError, DataError
from ssl_jax.registry import DATASETS


def pair_dataset(
  documents: Sequence[tuple[str, str]],
  workdir: str | None,
  objective: str,
  seq_len: int,
  short_seq_prob: float,
  passes: int,
  vocab_size: int,
  tokenizer_path: str,
  tokenizer_type: str,
  test_percent: int,
  seed: int,
  corpus_name: str,
  min_sentences: int = 2,
) -> Dataset:
  """Train / test pair rows of (name, text) documents."""
  if objective not in PAIR_OBJECTIVES:
    raise ConfigError(
      f"Unknown config.data.objective {objective!r}; valid: {list(PAIR_OBJECTIVES)}."
    )
  if min_sentences < 1 or passes < 1 or not 0.0 <= short_seq_prob <= 1.0:
    raise ConfigError(
      f"config.data.passes={passes} and min_sentences={min_sentences} must be >= 1 and short_seq_prob="
      f"{short_seq_prob} in [0, 1]."
    )
  by_split: dict[str, list[str]] = {"train": [], "test": []}
  for name, text in documents:
    by_split["test" if is_test_document(name, test_percent) else "train"].append(text)
  if not by_split["train"] or not by_split["test"]:
    raise DataError(
      f"{corpus_name}: {len(by_split['train'])} train and {len(by_split['test'])} test "
      f"documents with test_percent={test_percent}; both splits need at least one."
    )
  spec = TokenizerSpec(workdir, vocab_size, tokenizer_path, tokenizer_type, corpus_name)
  tokenizer = corpus_tokenizer(by_split["train"], spec)
  splits = {}
  for offset, (split, texts) in enumerate(by_split.items()):
    sentences = [split_sentences(text) for text in texts]
    flat = tokenizer.encode([s for doc in sentences for s in doc])
    encoded, start = [], 0
    for doc in sentences:
      encoded.append(flat[start : start + len(doc)])
      start += len(doc)
    pairs = build_pairs(
      encoded, objective, seq_len, short_seq_prob, passes, seed + offset, min_sentences
    )
    if not pairs:
      raise DataError(f"{corpus_name}: the {split} documents make no {objective} pair.")
    splits[split] = pair_rows(pairs, seq_len, tokenizer)
  labels = splits["train"]["pair_label"]
  return Dataset(
    splits=splits,
    modality="text",
    info={
      **vocabulary_info(tokenizer),
      "pair_objective": objective,
      "num_token_types": 2,
      "train_positive_fraction": float(labels.mean()),
      "num_train_documents": len(by_split["train"]),
      "num_test_documents": len(by_split["test"]),
    },
  )


@DATASETS.register("python_pairs", modality="text")
def python_pairs(
  workdir: str | None = None,
  objective: str = "nsp",
  seq_len: int = 64,
  short_seq_prob: float = 0.1,
  passes: int = 2,
  vocab_size: int = 2000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  test_percent: int = 10,
  seed: int = 0,
  stdlib_docstrings: bool = True,
  min_sentences: int = 2,
) -> Dataset:
  """NSP or SOP rows of Python's own English text (`objective` "nsp" or "sop"); `passes`
  passes over the documents with fresh random choices (BERT's dupe_factor); documents of
  fewer than `min_sentences` sentences are left out (one-sentence docstrings, a third of
  them, would only make random NSP pairs)."""
  return pair_dataset(
    python_documents(stdlib_docstrings),
    workdir,
    objective,
    seq_len,
    short_seq_prob,
    passes,
    vocab_size,
    tokenizer_path,
    tokenizer_type,
    test_percent,
    seed,
    "python_pairs",
    min_sentences,
  )


@DATASETS.register("text_file_pairs", modality="text")
def text_file_pairs(
  workdir: str | None = None,
  paths: str = "",
  format: str = "file",  # noqa: A002
  text_key: str = "text",
  objective: str = "nsp",
  seq_len: int = 128,
  short_seq_prob: float = 0.1,
  passes: int = 2,
  vocab_size: int = 4000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  test_percent: int = 10,
  seed: int = 0,
  min_sentences: int = 2,
) -> Dataset:
  """NSP or SOP rows of the user's documents (`paths`, `format` and `text_key` as for
  `text_files`; "file" by default: one document per file, as pairs need whole documents)."""
  if format not in FORMATS:
    raise DataError(f"Unknown config.data.format {format!r}; valid: {list(FORMATS)}.")
  documents = []
  for path, name in document_names(list_files(paths)).items():
    documents += read_documents(path, name, format, text_key)
  if not documents:
    raise DataError(f"No non-empty documents in {paths!r} (format {format!r}).")
  return pair_dataset(
    documents,
    workdir,
    objective,
    seq_len,
    short_seq_prob,
    passes,
    vocab_size,
    tokenizer_path,
    tokenizer_type,
    test_percent,
    seed,
    "text_file_pairs",
    min_sentences,
  )

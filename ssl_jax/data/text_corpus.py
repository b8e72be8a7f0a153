"""From documents to a packed text Dataset: held-out split by document, tokenizer (a sentencepiece
model trained on the train documents and cached in the workdir, or loaded from
`tokenizer_path`: a sentencepiece model or a model directory's tokenizer.json), packed rows.

Every text source (the embedded Python text, the user's text and JSONL files) ends here, so
they share one tokenizer contract and one row layout.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Sequence

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.first_process import first_on_process_zero
from ssl_jax.data.packing import pack_documents
from ssl_jax.data.source import Dataset
from ssl_jax.errors import DataError, MissingInputError
from ssl_jax.files import write_json


def is_test_document(name: str, test_percent: int) -> bool:
  """A stable hash of the document's name decides its split, so adding documents never moves
  an existing one between train and test."""
  return zlib.crc32(name.encode()) % 100 < test_percent


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
  """The tokenizer options every text source takes (config.data.vocab_size, tokenizer_path,
  tokenizer_type), the workdir that caches a trained one, and the corpus's name."""

  workdir: str | None
  vocab_size: int
  tokenizer_path: str
  tokenizer_type: str
  corpus_name: str

  def check_path(self) -> None:
    """A tokenizer_path that does not exist: a MissingInputError before any text is read."""
    if self.tokenizer_path and not tok.is_tokenizer_source(self.tokenizer_path):
      what = (
        "is a directory without a tokenizer.json"
        if os.path.isdir(self.tokenizer_path)
        else "does not exist"
      )
      raise MissingInputError(
        f"config.data.tokenizer_path={self.tokenizer_path!r} {what}. Point it at "
        f"{tok.TOKENIZER_FORMATS}, or leave it empty to train a sentencepiece model in the "
        "workdir."
      )


def text_dataset(
  documents: Sequence[tuple[str, str]],
  spec: TokenizerSpec,
  seq_len: int,
  test_percent: int,
  order_seed: int,
  extra_ids: int = 0,
  test_documents: Sequence[tuple[str, str]] | None = None,
) -> Dataset:
  """Packed rows of (name, text) documents, split by `is_test_document` (or, when
  `test_documents` is given, `documents` train and `test_documents` evaluate)."""
  spec.check_path()
  if test_documents is not None:
    train_docs, test_docs = [t for _, t in documents], [t for _, t in test_documents]
  else:
    train_docs = [text for name, text in documents if not is_test_document(name, test_percent)]
    test_docs = [text for name, text in documents if is_test_document(name, test_percent)]
  if not train_docs or not test_docs:
    raise DataError(
      f"{spec.corpus_name}: {len(train_docs)} train and {len(test_docs)} test documents "
      f"with test_percent={test_percent}; both splits need at least one."
    )
  tokenizer = tok.load_tokenizer(corpus_tokenizer(train_docs, spec).path, extra_ids)
  pack = functools.partial(
    pack_documents,
    seq_len=seq_len,
    order_seed=order_seed,
    pad_id=tokenizer.pad_id,
    bos_id=tokenizer.cls_id,
    eos_id=tokenizer.sep_id,
  )
  return Dataset(
    splits={"train": pack(tokenizer.encode(train_docs)), "test": pack(tokenizer.encode(test_docs))},
    modality="text",
    info={
      **vocabulary_info(tokenizer),
      "extra_ids": extra_ids,
      "num_train_documents": len(train_docs),
      "num_test_documents": len(test_docs),
    },
  )


def vocabulary_info(tokenizer: tok.TextTokenizer) -> dict:
  """The vocabulary facts every text dataset's `info` carries (sizes, tokenizer path, special
  token ids, word starts), which text tasks and evaluators read."""
  return {
    "vocab_size": tokenizer.vocab_size,
    "tokenizer_path": tokenizer.path,
    "text_vocab_size": tokenizer.text_vocab_size,
    "special_tokens": tokenizer.special_tokens(),
    "tokenizer_kind": tokenizer.kind,
    "pad_id": tokenizer.pad_id,
    "cls_id": tokenizer.cls_id,
    "sep_id": tokenizer.sep_id,
    "bos_id": tokenizer.cls_id,
    "eos_id": tokenizer.sep_id,
    "mask_id": tokenizer.mask_id,
    "unk_id": tokenizer.unk_id,
    "special_ids": tokenizer.special_ids,
    "word_start": tokenizer.word_start_table(),
  }


def corpus_tokenizer(train_docs: Iterable[str], spec: TokenizerSpec) -> tok.TextTokenizer:
  """The tokenizer at `tokenizer_path` (`tok.load_tokenizer`), else the one cached in the workdir, else one
  trained on the lines of `train_docs` (and cached there; only then is `train_docs` read). In a
  multi-process run process 0 trains and writes it; the others then load it."""
  return first_on_process_zero(lambda: _corpus_tokenizer(train_docs, spec), "ssl_jax tokenizer")


def _corpus_tokenizer(train_docs: Iterable[str], spec: TokenizerSpec) -> tok.TextTokenizer:
  workdir, vocab_size, tokenizer_path = spec.workdir, spec.vocab_size, spec.tokenizer_path
  tokenizer_type, corpus_name = spec.tokenizer_type, spec.corpus_name
  if tokenizer_path:
    tokenizer = tok.load_tokenizer(tokenizer_path)
  else:
    cached = os.path.join(workdir, "tokenizer.model") if workdir else ""
    if cached and os.path.isfile(cached):
      tokenizer = tok.load_tokenizer(cached)
      check_cached_tokenizer(cached, tokenizer, vocab_size, tokenizer_type)
    else:
      lines = (line for text in train_docs for line in text.splitlines() if line.strip())
      target = cached or os.path.join(
        tempfile.mkdtemp(prefix="ssl_jax_tokenizer_"),
        f"{corpus_name}_{vocab_size}_{tokenizer_type}.model",
      )
      tokenizer = tok.train_tokenizer(lines, target, vocab_size, tokenizer_type)
      if cached:
        write_json(_settings_path(cached), {"vocab_size": vocab_size, "type": tokenizer_type})
  if tokenizer.vocab_size < 5:
    raise DataError(f"Tokenizer {tokenizer.path!r} has only {tokenizer.vocab_size} pieces.")
  return tokenizer


def _settings_path(model_path: str) -> str:
  return os.path.splitext(model_path)[0] + ".json"


def check_cached_tokenizer(
  path: str, tokenizer: tok.TextTokenizer, vocab_size: int, tokenizer_type: str
) -> None:
  """A workdir's cached tokenizer must be the one this config would train: a DataError when
  config.data.vocab_size or tokenizer_type differ from what it was trained with."""
  settings = {"vocab_size": tokenizer.text_vocab_size}
  if os.path.isfile(_settings_path(path)):
    with open(_settings_path(path)) as f:
      settings.update(json.load(f))
  wanted = {"vocab_size": vocab_size, "type": tokenizer_type}
  differs = {k: (settings[k], v) for k, v in wanted.items() if k in settings and settings[k] != v}
  if differs:
    listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in differs.items())
    raise DataError(
      f"The workdir's cached tokenizer {path} was trained with other settings "
      f"(config.data: {listed}). Use a fresh workdir, or the settings it was trained with."
    )

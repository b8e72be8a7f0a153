"""Tokenizers by path: `load_tokenizer` reads ssl_jax's sentencepiece models and model
directories' `tokenizer.json` behind one contract (`ssl_jax.data.tokenizer_base`)."""

from __future__ import annotations

import os

from ssl_jax.data.json_tokenizer import JsonTokenizer, tokenizer_json_path
from ssl_jax.data.sentencepiece_tokenizer import (  # noqa: F401  (the face of the tokenizers)
  CLS_ID,
  MASK_ID,
  PAD_ID,
  SEP_ID,
  UNK_ID,
  SentencePieceTokenizer,
  train_tokenizer,
)
from ssl_jax.data.tokenizer_base import TextTokenizer
from ssl_jax.errors import MissingInputError

TOKENIZER_FORMATS = "a sentencepiece .model file, a tokenizer.json, or a model directory"


def is_tokenizer_source(path: str) -> bool:
  """`path` names something `load_tokenizer` reads (without reading it)."""
  return bool(path) and (
    tokenizer_json_path(path) is not None or (os.path.isfile(path) and not path.endswith(".json"))
  )


def load_tokenizer(path: str, extra_ids: int = 0) -> TextTokenizer:
  """The tokenizer at `path`: a model directory or file holding a `tokenizer.json`
  (`JsonTokenizer`), else a sentencepiece model (`SentencePieceTokenizer`)."""
  if tokenizer_json_path(path) is not None:
    return JsonTokenizer(path, extra_ids)
  if os.path.isdir(path):
    raise MissingInputError(
      f"{path!r} is a directory without a tokenizer.json; point at {TOKENIZER_FORMATS}."
    )
  return SentencePieceTokenizer(path, extra_ids)

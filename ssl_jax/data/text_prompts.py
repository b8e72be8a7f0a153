"""Prompts for reward fine-tuning from text: the first `prompt_tokens` pieces of each document
after [CLS], right-padded, with their lengths.

  config.data = {"name": "text_prompts", "tokenizer_path": "/tmp/gpt_python_text/tokenizer.model"}
  config.data = {"name": "text_prompts", "paths": "/data/prompts.jsonl", "format": "jsonl", ...}

`paths` empty: the embedded Python docstrings (`python_text`'s documents), split by the same
document hash and `test_percent`, so the test prompts are documents a `python_text`
pretraining with that test_percent never saw. Otherwise the user's files, read as
`text_files` reads them (lines, file or jsonl). `tokenizer_path` is the policy's tokenizer.
"""

from __future__ import annotations

import numpy as np

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.python_text import python_documents
from ssl_jax.data.random_walks import prompt_info
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import is_test_document
from ssl_jax.data.text_files import FORMATS, document_names, list_files, read_documents
from ssl_jax.errors import ConfigError, DataError
from ssl_jax.registry import DATASETS


def prompt_rows(tokenizer: tok.TextTokenizer, texts: list[str], prompt_tokens: int) -> dict:
  """{"prompt": [N, 1 + prompt_tokens] ([CLS] + the first pieces, padded), "prompt_length"}."""
  encoded = [[tokenizer.cls_id, *ids[:prompt_tokens]] for ids in tokenizer.encode(texts)]
  prompts = np.full((len(encoded), prompt_tokens + 1), tokenizer.pad_id, np.int32)
  for row, ids in enumerate(encoded):
    prompts[row, : len(ids)] = ids
  return {"prompt": prompts, "prompt_length": np.array([len(e) for e in encoded], np.int32)}


@DATASETS.register("text_prompts", modality="text")
def text_prompts(
  workdir: str | None = None,
  paths: str = "",
  format: str = "lines",  # noqa: A002
  text_key: str = "text",
  prompt_tokens: int = 8,
  tokenizer_path: str = "",
  test_percent: int = 10,
  stdlib_docstrings: bool = True,
) -> Dataset:
  """Prompt rows of the embedded docstrings or the user's files (see the module docstring)."""
  del workdir
  if not tokenizer_path:
    raise ConfigError(
      "config.data.tokenizer_path is empty: point it at the policy's pretraining run's "
      "tokenizer.model."
    )
  if int(prompt_tokens) < 1:
    raise ConfigError(f"config.data.prompt_tokens must be >= 1, got {prompt_tokens!r}.")
  if paths:
    if format not in FORMATS:
      raise DataError(f"Unknown config.data.format {format!r}; valid: {list(FORMATS)}.")
    documents = []
    for path, name in document_names(list_files(paths)).items():
      documents += read_documents(path, name, format, text_key)
  else:
    documents = list(python_documents(stdlib_docstrings))
  documents = [(name, text) for name, text in documents if text.strip()]
  splits = {"train": [], "test": []}
  for name, text in documents:
    splits["test" if is_test_document(name, test_percent) else "train"].append(text)
  if not splits["train"] or not splits["test"]:
    raise DataError(
      f"text_prompts: {len(splits['train'])} train and {len(splits['test'])} test documents with "
      f"test_percent={test_percent}; both splits need at least one."
    )
  tokenizer = tok.load_tokenizer(tokenizer_path)
  return Dataset(
    {split: prompt_rows(tokenizer, texts, int(prompt_tokens)) for split, texts in splits.items()},
    "text",
    info=prompt_info(tokenizer),
  )

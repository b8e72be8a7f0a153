"""The user's own corpus: plain text or JSONL files, tokenized and packed like the embedded text.

  config.data = {"name": "text_files", "paths": "/data/corpus/*.txt", "format": "lines"}

Formats:
  lines   one document per non-empty line of every file
  file    one document per file (its whole text)
  jsonl   one JSON object per line; the document is its `text_key` field
Documents are named "<file>:<line>" (or "<file>"), the file's path relative to the directory
all matched files share, and a hash of the name holds out `test_percent` of them: the split
does not change when files are added or when the whole dataset is copied elsewhere.
"""

from __future__ import annotations

import glob
import json
import os

from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import text_dataset
from ssl_jax.errors import DataError, MissingInputError
from ssl_jax.registry import DATASETS

FORMATS = ("lines", "file", "jsonl")


@DATASETS.register("text_files")
def text_files(
  workdir: str | None = None,
  paths: str = "",
  format: str = "lines",  # noqa: A002
  text_key: str = "text",
  seq_len: int = 128,
  vocab_size: int = 4000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  test_percent: int = 10,
  order_seed: int = 0,
  extra_ids: int = 0,
) -> Dataset:
  """Packed token rows of the documents in `paths` (comma-separated files or glob patterns).

  Args:
    paths: e.g. "/data/a.txt,/data/more/*.jsonl".
    format: "lines", "file" or "jsonl" (see the module docstring).
    text_key: the JSONL field holding the text.
    The rest: as for `python_text` (tokenizer trained on the train documents and cached in the
    workdir unless `tokenizer_path` names a sentencepiece model).
  """
  if format not in FORMATS:
    raise DataError(f"Unknown config.data.format {format!r}; valid: {list(FORMATS)}.")
  files = list_files(paths)
  documents = []
  for path, name in document_names(files).items():
    documents += read_documents(path, name, format, text_key)
  if not documents:
    raise DataError(f"No non-empty documents in {files} (format {format!r}).")
  return text_dataset(
    documents,
    workdir,
    seq_len,
    vocab_size,
    tokenizer_path,
    tokenizer_type,
    test_percent,
    order_seed,
    "text_files",
    extra_ids,
  )


def list_files(paths: str) -> list[str]:
  """Sorted files matching each comma-separated path or glob; a pattern matching nothing is an
  error that names it."""
  files = []
  for pattern in (p.strip() for p in paths.split(",") if p.strip()):
    matches = sorted(glob.glob(os.path.expanduser(pattern)))
    matches = [m for m in matches if os.path.isfile(m)]
    if not matches:
      raise MissingInputError(f"config.data.paths: {pattern!r} matches no file.")
    files += matches
  if not files:
    raise DataError("config.data.paths is empty; give files or glob patterns, comma-separated.")
  return files


def document_names(files: list[str]) -> dict[str, str]:
  """{file: its path relative to the files' common directory}: what a document's name (and so
  its split) is made from, so the split does not depend on where the dataset lives."""
  root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
  return {f: os.path.relpath(os.path.abspath(f), root) for f in files}


def read_documents(
  path: str,
  name: str,
  format: str,
  text_key: str,  # noqa: A002
) -> list[tuple[str, str]]:
  """(name, text) documents of one file; `name` names the file in document names."""
  try:
    with open(path, encoding="utf-8") as f:
      content = f.read()
  except UnicodeDecodeError as error:
    raise DataError(f"{path} is not UTF-8 text: {error}") from error
  if format == "file":
    return [(name, content)] if content.strip() else []
  documents = []
  for number, line in enumerate(content.splitlines(), 1):
    if not line.strip():
      continue
    if format == "lines":
      documents.append((f"{name}:{number}", line))
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as error:
      raise DataError(f"{path}:{number} is not valid JSON: {error}") from error
    if not isinstance(record, dict) or text_key not in record:
      keys = sorted(record) if isinstance(record, dict) else type(record).__name__
      raise DataError(
        f"{path}:{number} has no field {text_key!r} (has {keys}); set config.data.text_key."
      )
    if str(record[text_key]).strip():
      documents.append((f"{name}:{number}", str(record[text_key])))
  return documents

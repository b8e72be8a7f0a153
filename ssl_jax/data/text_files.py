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

import functools
import glob
import json
import os

from ssl_jax.data import corpus_shards
from ssl_jax.data.source import Dataset
from ssl_jax.data.streamed_corpus import cached_text_dataset
from ssl_jax.data.text_corpus import TokenizerSpec
from ssl_jax.errors import DataError, MissingInputError
from ssl_jax.registry import DATASETS

FORMATS = ("lines", "file", "jsonl")


@DATASETS.register("text_files", modality="text")
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
  cache_dir: str = "",
  tokenize_workers: int = 0,
  shard_mb: float = 32.0,
  tokenizer_sample_mb: int = 256,
) -> Dataset:
  """Packed token rows of the documents in `paths` (comma-separated files or glob patterns),
  tokenized once into an on-disk cache and read from it by row.

  Args:
    paths: e.g. "/data/a.txt,/data/more/*.jsonl".
    format: "lines", "file" or "jsonl" (see the module docstring).
    text_key: the JSONL field holding the text.
    cache_dir: where the token cache lives ("": `<workdir>/token_cache`); a shared directory
      lets runs on the same corpus and tokenizer reuse one cache.
    tokenize_workers: processes tokenizing the shards (0: one per CPU, at most 16, and one
      per 16 MB of text; 1: in this process).
    shard_mb: megabytes of text per shard (a worker's unit of work; rows never span shards).
    tokenizer_sample_mb: megabytes of train text a new tokenizer is trained on.
    The rest: as for `python_text` (tokenizer trained on the train documents and cached in the
    workdir unless `tokenizer_path` names a sentencepiece model).
  """
  if format not in FORMATS:
    raise DataError(f"Unknown config.data.format {format!r}; valid: {list(FORMATS)}.")
  if not shard_mb > 0:
    raise DataError(f"config.data.shard_mb={shard_mb} must be above 0 (megabytes per shard).")
  files = list_files(paths)
  names = document_names(files)
  shard_bytes = max(1, int(shard_mb * 2**20))
  corpus = corpus_shards.Corpus(
    name="text_files",
    plan=functools.partial(plan_shards, files, format, shard_bytes),
    read_shard=functools.partial(read_shard, names=names, format=format, text_key=text_key),
    fingerprint={
      "files": [(names[f], os.path.getsize(f), os.stat(f).st_mtime_ns) for f in files],
      "format": format,
      "text_key": text_key if format == "jsonl" else "",
      "shard_bytes": shard_bytes,
    },
  )
  if not any(os.path.getsize(f) for f in files):
    raise DataError(f"No non-empty documents in {files} (format {format!r}).")
  spec = TokenizerSpec(workdir, vocab_size, tokenizer_path, tokenizer_type, corpus.name)
  return cached_text_dataset(
    corpus,
    spec,
    seq_len,
    test_percent,
    order_seed,
    extra_ids,
    cache_dir,
    tokenize_workers,
    tokenizer_sample_mb,
  )


def plan_shards(
  files: list[str],
  format: str,  # noqa: A002
  shard_bytes: int,
) -> list[corpus_shards.CorpusShard]:
  """Groups of whole files ("file"), or byte ranges of each file cut at line ends."""
  if format == "file":
    return corpus_shards.group_files(files, shard_bytes)
  return [shard for path in files for shard in corpus_shards.line_shards(path, shard_bytes)]


def read_shard(
  shard: corpus_shards.CorpusShard,
  names: dict[str, str],
  format: str,  # noqa: A002
  text_key: str,
) -> list[tuple[str, str]]:
  """(name, text) documents of one shard: a byte range of a lines / JSONL file, or a group of
  whole files."""
  if format == "file":
    return [doc for path in shard.source for doc in read_documents(path, names[path], format, "")]
  with open(shard.source, "rb") as f:
    f.seek(shard.start)
    content = f.read(shard.stop - shard.start)
  return read_documents(
    shard.source, names[shard.source], format, text_key, content, shard.first_name
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
  format: str,  # noqa: A002
  text_key: str,
  data: bytes | None = None,
  lines_before: int = 0,
) -> list[tuple[str, str]]:
  """(name, text) documents of one file, or of `data` (its bytes after `lines_before` lines);
  `name` names the file in document names."""
  if data is None:
    with open(path, "rb") as f:
      data = f.read()
  try:
    content = data.decode("utf-8")
  except UnicodeDecodeError as error:
    raise DataError(f"{path} is not UTF-8 text: {error}") from error
  if format == "file":
    return [(name, content)] if content.strip() else []
  documents = []
  # Lines end at "\n" only (the shards are cut there), not at str.splitlines' other breaks.
  for number, line in enumerate(content.split("\n"), lines_before + 1):
    line = line.removesuffix("\r")
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

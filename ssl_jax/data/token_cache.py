"""A text corpus tokenized once into packed rows on disk, then read by row index.

A corpus (`ssl_jax.data.corpus_shards`) is a list of `CorpusShard`s (a byte range of a text file, a group of small files, a
record range of a tfds split) plus a `fingerprint` of its sources. `build_token_cache`
tokenizes the shards in parallel worker processes (each reads its own shard, so the parent
never holds the corpus), packs each shard's documents into rows (`packing.pack_documents`:
tokens, segment ids, positions) and writes one row file per split:

  <cache_root>/<key>/train.rows   [rows, 3, seq_len] uint16 (int32 for big vocabularies)
  <cache_root>/<key>/test.rows
  <cache_root>/<key>/meta.json    row counts, dtype, document counts, train token counts

The key hashes the fingerprint, the tokenizer model's bytes, the row length and the split
rule, so a changed corpus or tokenizer builds a new cache and an unchanged one is reused. A
build happens in `<key>.partial-<pid>` and is renamed into place only when complete, under a
file lock that makes a second process wait for the first build instead of repeating it: a
partially written cache is never read. Shards are fixed by the data (not the worker count),
so the rows are the same whatever the number of workers.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent import futures
from typing import Any

import numpy as np

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.corpus_shards import Corpus
from ssl_jax.data.packing import pack_documents
from ssl_jax.data.records import RecordSplit
from ssl_jax.data.text_corpus import is_test_document
from ssl_jax.errors import DataError

CACHE_VERSION = 1
COLUMNS = ("tokens", "segment_ids", "positions")
SPLITS = ("train", "test")

# Below this much text per worker, starting a process (it imports ssl_jax, seconds) costs more
# than it saves: a small corpus is tokenized in the calling process.
BYTES_PER_WORKER = 16 << 20


def default_workers(num_bytes: int) -> int:
  """One worker per CPU (at most 16), fewer for a corpus under 16 MB per worker."""
  return max(1, min(os.cpu_count() or 1, 16, num_bytes // BYTES_PER_WORKER))


def cache_key(corpus: Corpus, tokenizer_path: str, seq_len: int, test_percent: int) -> str:
  digest = hashlib.sha256()
  with open(tokenizer_path, "rb") as f:
    digest.update(f.read())
  settings = {
    "version": CACHE_VERSION,
    "corpus": corpus.fingerprint,
    "seq_len": seq_len,
    "test_percent": test_percent,
    "tokenizer": digest.hexdigest(),
  }
  text = json.dumps(settings, sort_keys=True, default=str)
  return f"{corpus.name}-{seq_len}-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def row_dtype(vocab_size: int, seq_len: int) -> np.dtype:
  """uint16 rows when every token id and position fits (half the disk and reads), else int32."""
  return np.dtype(np.uint16 if max(vocab_size, seq_len + 1) <= 2**16 else np.int32)


# Per worker process: the loaded tokenizer (loading costs more than a small shard).
_WORKER_TOKENIZERS: dict[str, tok.TextTokenizer] = {}


def tokenize_shard(
  corpus: Corpus,
  index: int,
  tokenizer_path: str,
  seq_len: int,
  test_percent: int,
  order_seed: int,
  out_dir: str,
  dtype_name: str,
) -> dict[str, Any]:
  """Reads, splits, tokenizes and packs shard `index`; writes `<out_dir>/<index>.<split>`.

  Returns the shard's row and document counts and train token counts.
  """
  shard = corpus.shards[index]
  if tokenizer_path not in _WORKER_TOKENIZERS:
    _WORKER_TOKENIZERS[tokenizer_path] = tok.load_tokenizer(tokenizer_path)
  tokenizer = _WORKER_TOKENIZERS[tokenizer_path]
  documents = {split: [] for split in SPLITS}
  for name, text in corpus.read_shard(shard):
    split = shard.split or ("test" if is_test_document(name, test_percent) else "train")
    documents[split].append(text)
  dtype = np.dtype(dtype_name)
  result = {"rows": {}, "documents": {}, "bytes": shard.num_bytes}
  for split, texts in documents.items():
    result["documents"][split] = len(texts)
    rows = np.zeros((0, 3, seq_len), dtype)
    if texts:
      encoded = tokenizer.encode(texts)
      # A seed per shard: documents mix within rows, and rows do not depend on other shards.
      packed = pack_documents(
        encoded, seq_len, [order_seed, index], tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id
      )
      rows = np.stack([packed[c] for c in COLUMNS], axis=1).astype(dtype)
      if split == "train":
        result["token_counts"] = np.bincount(
          packed["tokens"][packed["segment_ids"] > 0], minlength=tokenizer.vocab_size
        )
    rows.tofile(os.path.join(out_dir, f"{index}.{split}"))
    result["rows"][split] = len(rows)
  result.setdefault("token_counts", np.zeros(tokenizer.vocab_size, np.int64))
  return result


class _Progress:
  """Bytes tokenized, MB/s and ETA on stderr: one line rewritten in place on a terminal, a line
  every 30 seconds in a log."""

  def __init__(self, name: str, total: int):
    self.name, self.total, self.done, self.start = name, total, 0, time.time()
    self.tty = sys.stderr.isatty()
    self.shown = self.start

  def advance(self, num_bytes: int) -> None:
    self.done += num_bytes
    now = time.time()
    if now - self.shown < (1.0 if self.tty else 30.0):
      return
    self.shown = now
    rate = self.done / max(now - self.start, 1e-9)
    eta = (self.total - self.done) / rate if rate else 0.0
    line = (
      f"Tokenizing {self.name}: {self.done / 1e6:,.0f}/{self.total / 1e6:,.0f} MB "
      f"({100 * self.done / max(self.total, 1):.0f}%) | {rate / 1e6:.1f} MB/s | ETA {eta:.0f}s"
    )
    print("\r" + line if self.tty else line, end="" if self.tty else "\n", file=sys.stderr)

  def finish(self, directory: str) -> None:
    seconds = time.time() - self.start
    print(
      f"{chr(13) if self.tty else ''}Tokenized {self.name}: {self.total / 1e6:,.1f} MB in "
      f"{seconds:.1f}s ({self.total / 1e6 / max(seconds, 1e-9):.1f} MB/s) into {directory}",
      file=sys.stderr,
    )


def build_token_cache(
  corpus: Corpus,
  cache_root: str,
  tokenizer_path: str,
  seq_len: int,
  test_percent: int,
  order_seed: int,
  vocab_size: int,
  workers: int = 0,
) -> str:
  """The directory of `corpus`'s cached rows, building it first if it does not exist."""
  key = cache_key(corpus, tokenizer_path, seq_len, test_percent)
  final = os.path.join(cache_root, key)
  if os.path.isfile(os.path.join(final, "meta.json")):
    return final
  if not corpus.shards:
    raise DataError(f"{corpus.name}: the corpus has no shards to tokenize.")
  check_cache_root(cache_root)
  os.makedirs(cache_root, exist_ok=True)
  with open(os.path.join(cache_root, key + ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Another process building the same cache: wait for it.
    if os.path.isfile(os.path.join(final, "meta.json")):
      return final
    # Left by a build that died, or damaged (no meta.json): we hold the lock, so none is live.
    for stale in glob.glob(os.path.join(cache_root, glob.escape(key) + ".partial-*")) + [final]:
      shutil.rmtree(stale, ignore_errors=True)
    partial = os.path.join(cache_root, f"{key}.partial-{os.getpid()}")
    os.makedirs(partial)
    try:
      dtype = row_dtype(vocab_size, seq_len)
      args = (tokenizer_path, seq_len, test_percent, order_seed, partial, dtype.name)
      progress = _Progress(corpus.name, corpus.num_bytes)
      results = _tokenize_all(corpus, args, workers, progress)
      _write_cache(partial, results, dtype, seq_len)
      os.rename(partial, final)
      progress.finish(final)
    finally:
      shutil.rmtree(partial, ignore_errors=True)
  return final


def check_cache_root(cache_root: str) -> None:
  """A DataError, before anything is written, when `cache_root` is a file or not writable
  (nor creatable under its nearest existing parent)."""
  existing = os.path.abspath(cache_root)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  problem = ""
  if not os.path.isdir(existing):
    problem = f"{existing} is not a directory"
  elif not os.access(existing, os.W_OK | os.X_OK):
    problem = f"{existing} is not writable"
  if problem:
    raise DataError(
      f"config.data.cache_dir={cache_root!r} cannot hold the token cache ({problem}); give a "
      "writable directory, or leave it empty for <workdir>/token_cache."
    )


def _tokenize_all(
  corpus: Corpus, args: tuple, workers: int, progress: _Progress
) -> list[dict[str, Any]]:
  workers = min(workers or default_workers(corpus.num_bytes), len(corpus.shards))
  results = [None] * len(corpus.shards)
  if workers == 1:
    for index in range(len(corpus.shards)):
      results[index] = tokenize_shard(corpus, index, *args)
      progress.advance(results[index]["bytes"])
    return results
  # Spawned, not forked: the parent has JAX's threads running.
  context = multiprocessing.get_context("spawn")
  with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
    pending = {
      pool.submit(tokenize_shard, corpus, index, *args): index
      for index in range(len(corpus.shards))
    }
    try:
      for done in futures.as_completed(pending):
        results[pending[done]] = done.result()
        progress.advance(results[pending[done]]["bytes"])
    except BaseException:
      pool.shutdown(cancel_futures=True)  # A bad shard (or Ctrl-C) stops the rest now.
      raise
  return results


def _write_cache(directory: str, results: list[dict], dtype: np.dtype, seq_len: int) -> None:
  for split in SPLITS:
    with open(os.path.join(directory, f"{split}.rows"), "wb") as out:
      for index in range(len(results)):
        part = os.path.join(directory, f"{index}.{split}")
        with open(part, "rb") as f:
          shutil.copyfileobj(f, out, 16 << 20)
        os.remove(part)
      out.flush()
      os.fsync(out.fileno())
  meta = {
    "version": CACHE_VERSION,
    "seq_len": seq_len,
    "dtype": dtype.name,
    "rows": {s: sum(r["rows"][s] for r in results) for s in SPLITS},
    "documents": {s: sum(r["documents"][s] for r in results) for s in SPLITS},
    "bytes": sum(r["bytes"] for r in results),
    "train_token_counts": np.sum([r["token_counts"] for r in results], axis=0).tolist(),
  }
  with open(os.path.join(directory, "meta.json"), "w") as f:
    json.dump(meta, f)
    f.flush()
    os.fsync(f.fileno())


def read_meta(directory: str) -> dict[str, Any]:
  with open(os.path.join(directory, "meta.json")) as f:
    return json.load(f)


def cached_split(directory: str, split: str) -> RecordSplit:
  """The rows of one split as a RecordSplit of int32 tokens / segment_ids / positions, read from
  disk by index (positioned reads, not a memory map: resident memory stays flat however much of
  the file a long run touches)."""
  meta = read_meta(directory)
  seq_len, dtype = meta["seq_len"], np.dtype(meta["dtype"])
  row_bytes = 3 * seq_len * dtype.itemsize
  path = os.path.join(directory, f"{split}.rows")
  num_rows = meta["rows"][split]
  if os.path.getsize(path) != num_rows * row_bytes:
    raise DataError(
      f"Token cache {path} holds {os.path.getsize(path)} bytes, not the {num_rows} rows its "
      "meta.json lists; delete the cache directory to rebuild it."
    )
  fd = os.open(path, os.O_RDONLY)

  def read_rows(indices: np.ndarray) -> dict[str, np.ndarray]:
    rows = read_row_runs(fd, indices, row_bytes, dtype, seq_len)
    return {column: rows[:, c].astype(np.int32) for c, column in enumerate(COLUMNS)}

  columns = {column: ((seq_len,), np.int32) for column in COLUMNS}
  return RecordSplit(num_rows, read_rows, columns, read_batch_size=1024)


def read_row_runs(
  fd: int, indices: np.ndarray, row_bytes: int, dtype: np.dtype, seq_len: int
) -> np.ndarray:
  """[len(indices), 3, seq_len] rows of a row file: one positioned read per run of
  consecutive indices (an in-order evaluation batch is a single read)."""
  out = np.empty((len(indices), 3, seq_len), dtype)
  if not len(indices):
    return out
  order = np.argsort(indices, kind="stable")
  ordered = indices[order]
  breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
  for run in np.split(np.arange(len(ordered)), breaks):
    first, count = int(ordered[run[0]]), len(run)
    data = os.pread(fd, count * row_bytes, first * row_bytes)
    out[order[run]] = np.frombuffer(data, dtype).reshape(count, 3, seq_len)
  return out

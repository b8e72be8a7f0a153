"""A user's corpus as a Dataset read from the on-disk token cache (`ssl_jax.data.token_cache`).

`text_files` and `tfds_text` describe their corpus as shards; this module trains (or loads) the
tokenizer on a bounded sample of the train documents, builds the cache once, and returns splits
that read rows by index. Start-up after the first build costs a stat of the sources and a
hash of the tokenizer, whatever the corpus size, and no process holds the corpus in memory.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import numpy as np

from ssl_jax.data import corpus_shards, token_cache
from ssl_jax.data import tokenizer as tok
from ssl_jax.data.first_process import first_on_process_zero
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import (
  TokenizerSpec,
  corpus_tokenizer,
  is_test_document,
  vocabulary_info,
)
from ssl_jax.errors import DataError


def default_cache_root(workdir: str | None) -> str:
  """`<workdir>/token_cache`, or the user cache directory for a run without a workdir."""
  if workdir:
    return os.path.join(workdir, "token_cache")
  base = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
  return os.path.join(base, "ssl_jax", "token_cache")


def sample_train_texts(
  corpus: corpus_shards.Corpus, test_percent: int, max_bytes: int
) -> Iterator[str]:
  """The train documents of the first shards, up to about `max_bytes` of text: what the
  tokenizer is trained on (sentencepiece needs a sample, not the whole corpus). Lazy: nothing
  is read when the tokenizer is loaded instead."""
  seen = 0
  for shard in corpus.shards:
    for name, text in corpus.read_shard(shard):
      train = shard.split == "train" or (
        not shard.split and not is_test_document(name, test_percent)
      )
      if train:
        yield text
        seen += len(text.encode())
        if seen >= max_bytes:
          return
  if not seen:
    raise DataError(
      f"{corpus.name}: no train documents to train a tokenizer on with test_percent={test_percent}."
    )


def cached_text_dataset(
  corpus: corpus_shards.Corpus,
  spec: TokenizerSpec,
  seq_len: int,
  test_percent: int,
  order_seed: int,
  extra_ids: int = 0,
  cache_dir: str = "",
  tokenize_workers: int = 0,
  tokenizer_sample_mb: int = 256,
) -> Dataset:
  """Packed rows of `corpus`, tokenized once into `cache_dir` (default `<workdir>/token_cache`).

  Args:
    tokenize_workers: processes that tokenize shards (0: one per CPU, at most 16, and one
      per 16 MB of text; 1: in this process).
    tokenizer_sample_mb: megabytes of train text the tokenizer is trained on.
    The rest: as for `text_corpus.text_dataset`.
  """
  if seq_len < 2:
    raise DataError(f"seq_len must be at least 2, got {seq_len}.")
  spec.check_path()
  if tokenize_workers < 0 or tokenizer_sample_mb < 1:
    raise DataError(
      f"config.data.tokenize_workers={tokenize_workers} must be >= 0 (0: one per CPU) and "
      f"tokenizer_sample_mb={tokenizer_sample_mb} at least 1."
    )
  cache_root = cache_dir or default_cache_root(spec.workdir)
  token_cache.check_cache_root(cache_root)
  texts = sample_train_texts(corpus, test_percent, tokenizer_sample_mb << 20)
  base = corpus_tokenizer(texts, spec)
  tokenizer = tok.load_tokenizer(base.path, extra_ids)
  build = functools.partial(
    token_cache.build_token_cache,
    corpus,
    cache_root,
    tokenizer.path,
    seq_len,
    test_percent,
    order_seed,
    tokenizer.vocab_size,
    tokenize_workers,
  )
  directory = first_on_process_zero(build, "ssl_jax token cache")
  meta = token_cache.read_meta(directory)
  documents = meta["documents"]
  if not documents["train"] or not documents["test"]:
    raise DataError(
      f"{corpus.name}: {documents['train']} train and {documents['test']} test documents "
      f"with test_percent={test_percent}; both splits need at least one."
    )
  counts = np.zeros(tokenizer.vocab_size, np.int64)
  counts[: len(meta["train_token_counts"])] = meta["train_token_counts"]
  return Dataset(
    splits={split: token_cache.cached_split(directory, split) for split in token_cache.SPLITS},
    modality="text",
    info={
      **vocabulary_info(tokenizer),
      "extra_ids": extra_ids,
      "num_train_documents": documents["train"],
      "num_test_documents": documents["test"],
      "train_token_counts": counts,
      "token_cache": directory,
    },
  )

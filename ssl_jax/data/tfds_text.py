"""TFDS text datasets read through `tfds.data_source` (array_record; no TensorFlow), e.g.

  tfds build lm1b --file_format=array_record --data_dir=~/tensorflow_datasets
  python -m ssl_jax.main --config configs/bert_python_text.py \
      --config.data.name=tfds_text --config.data.dataset=lm1b --config.data.test_split=test

Each record's text feature is one document. Record ranges are tokenized in worker processes
into the on-disk token cache (`ssl_jax.data.token_cache`) with a sentencepiece tokenizer
trained on a sample of the train documents (or loaded); rows are read from it by index.
"""

from __future__ import annotations

import functools

from ssl_jax.data import corpus_shards
from ssl_jax.data.source import Dataset
from ssl_jax.data.streamed_corpus import cached_text_dataset
from ssl_jax.data.text_corpus import TokenizerSpec
from ssl_jax.data.tfds_images import open_data_source, prepared_builder
from ssl_jax.errors import DataError
from ssl_jax.registry import DATASETS


def read_texts(source, text_key: str, start: int, stop: int, what: str) -> list[tuple[str, str]]:
  """(name, text) of records [start, stop) of a tfds data source (blank ones skipped)."""
  documents = []
  for first in range(start, stop, 1024):
    records = source.__getitems__(list(range(first, min(first + 1024, stop))))
    for offset, record in enumerate(records):
      text = record[text_key]
      text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
      if text.strip():
        documents.append((f"{what}:{first + offset}", text))
  return documents


def read_shard(
  shard: corpus_shards.CorpusShard, builder_dir: str, dataset: str, text_key: str
) -> list[tuple[str, str]]:
  """The documents of one shard (a record range of a split), opened in the worker itself."""
  import tensorflow_datasets as tfds

  split_name = shard.source
  if (builder_dir, split_name) not in _OPENED:
    builder = tfds.builder_from_directory(builder_dir)
    _OPENED[builder_dir, split_name] = open_data_source(builder, dataset, split_name)
  return read_texts(_OPENED[builder_dir, split_name], text_key, shard.start, shard.stop, split_name)


# Per worker process: opened data sources (opening one reads the dataset's metadata).
_OPENED: dict[tuple[str, str], object] = {}


def record_shards(builder, split: str, count: int, shard_bytes: int, role: str):
  """Record ranges of about `shard_bytes` of split `split`'s first `count` records."""
  info = builder.info.splits[split]
  split_bytes = int(getattr(info, "num_bytes", 0) or 0)
  per_record = split_bytes / max(info.num_examples, 1) if split_bytes else 1024
  step = max(1, int(shard_bytes / max(per_record, 1)))
  return [
    corpus_shards.CorpusShard(
      split, start, min(start + step, count), split=role, num_bytes=int(per_record * step)
    )
    for start in range(0, count, step)
  ]


@DATASETS.register("tfds_text", modality="text")
def tfds_text(
  workdir: str | None = None,
  dataset: str = "lm1b",
  data_dir: str = "",
  text_key: str = "text",
  train_split: str = "train",
  test_split: str = "",
  max_documents: int = 0,
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
  """Packed token rows of a prepared tfds text dataset, tokenized once into an on-disk cache.

  Args:
    dataset: tfds name, optionally with config/version ("wikipedia/20230601.en", "lm1b:1.1.0").
    data_dir: where it was prepared (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    text_key: the feature holding the text ("text" for lm1b, wikipedia, c4).
    train_split: tfds split string of the training documents.
    test_split: held-out split; "" holds out `test_percent` of the train documents by a
      stable hash of their index, as the other text sources do.
    max_documents: read at most this many records per split (0: all of them).
    cache_dir, tokenize_workers, shard_mb, tokenizer_sample_mb: as for `text_files`.
    The rest: as for `python_text`.
  """
  import tensorflow_datasets as tfds  # Imported here: a slow import most runs do not need.

  if not shard_mb > 0:
    raise DataError(f"config.data.shard_mb={shard_mb} must be above 0 (megabytes per shard).")
  builder = prepared_builder(tfds, dataset, data_dir)
  if text_key not in builder.info.features:
    raise DataError(
      f"tfds dataset {dataset!r} has no feature {text_key!r}; features: "
      f"{sorted(builder.info.features.keys())}."
    )
  shards, counts = [], {}
  for split, role in ((train_split, "train" if test_split else ""), (test_split, "test")):
    if not split:
      continue
    num_records = len(open_data_source(builder, dataset, split))
    counts[split] = num_records if not max_documents else min(max_documents, num_records)
    shards += record_shards(builder, split, counts[split], int(shard_mb * 2**20), role)
  corpus = corpus_shards.Corpus(
    name="tfds_" + dataset.replace("/", "_").replace(":", "_"),
    plan=functools.partial(tuple, shards),  # Record ranges cost nothing to plan.
    read_shard=functools.partial(
      read_shard, builder_dir=str(builder.data_dir), dataset=dataset, text_key=text_key
    ),
    fingerprint={
      "builder": str(builder.data_dir),
      "version": str(builder.info.version),
      "records": counts,
      "text_key": text_key,
      "shard_bytes": int(shard_mb * 2**20),
    },
  )
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

"""TFDS text datasets read through `tfds.data_source` (array_record; no TensorFlow), e.g.

  tfds build lm1b --file_format=array_record --data_dir=~/tensorflow_datasets
  python -m ssl_jax.main --config configs/bert_python_text.py \
      --config.data.name=tfds_text --config.data.dataset=lm1b --config.data.test_split=test

Each record's text feature is one document. Documents then take the path every text source
takes (`ssl_jax.data.text_corpus`): a sentencepiece tokenizer trained on the train documents
(or loaded), and packed rows with segment ids.
"""

from __future__ import annotations

from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import text_dataset
from ssl_jax.data.tfds_images import open_data_source, prepared_builder
from ssl_jax.errors import DataError
from ssl_jax.registry import DATASETS


def read_texts(source, text_key: str, limit: int, what: str) -> list[tuple[str, str]]:
  """(name, text) of the first `limit` records (all if 0) of a tfds data source."""
  count = len(source) if not limit else min(limit, len(source))
  documents = []
  for start in range(0, count, 1024):
    records = source.__getitems__(list(range(start, min(start + 1024, count))))
    for offset, record in enumerate(records):
      text = record[text_key]
      text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
      if text.strip():
        documents.append((f"{what}:{start + offset}", text))
  return documents


@DATASETS.register("tfds_text")
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
) -> Dataset:
  """Packed token rows of a prepared tfds text dataset.

  Args:
    dataset: tfds name, optionally with config/version ("wikipedia/20230601.en", "lm1b:1.1.0").
    data_dir: where it was prepared (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    text_key: the feature holding the text ("text" for lm1b, wikipedia, c4).
    train_split: tfds split string of the training documents.
    test_split: held-out split; "" holds out `test_percent` of the train documents by a
      stable hash of their index, as the other text sources do.
    max_documents: read at most this many records per split (0: all of them).
    The rest: as for `python_text`.
  """
  import tensorflow_datasets as tfds  # Imported here: a slow import most runs do not need.

  builder = prepared_builder(tfds, dataset, data_dir)
  if text_key not in builder.info.features:
    raise DataError(
      f"tfds dataset {dataset!r} has no feature {text_key!r}; features: "
      f"{sorted(builder.info.features.keys())}."
    )

  def documents(split: str) -> list[tuple[str, str]]:
    source = open_data_source(builder, dataset, split)
    return read_texts(source, text_key, max_documents, split)

  return text_dataset(
    documents(train_split),
    workdir,
    seq_len,
    vocab_size,
    tokenizer_path,
    tokenizer_type,
    test_percent,
    order_seed,
    "tfds_" + dataset.replace("/", "_").replace(":", "_"),
    extra_ids,
    test_documents=documents(test_split) if test_split else None,
  )

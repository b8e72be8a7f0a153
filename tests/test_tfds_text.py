"""tfds text datasets (array_record, no TensorFlow) through the shared text path, on a small
dataset this test writes."""

import numpy as np
import pytest

from ssl_jax.data.tokenizer import load_tokenizer
from ssl_jax.registry import DATASETS

WORDS = (
  "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
  "rho sigma tau upsilon phi chi psi omega"
).split()


def _sentence(rng) -> str:
  return " ".join(rng.choice(WORDS, size=rng.integers(5, 15)))


@pytest.fixture(scope="module")
def tfds_text_dir(tmp_path_factory):
  import tensorflow_datasets as tfds

  class TinyText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    name = "tiny_text"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()})
      )

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(60, 0), "test": self._generate_examples(12, 1)}

    def _generate_examples(self, count, seed):
      rng = np.random.default_rng(seed)
      for i in range(count):
        yield i, {"text": _sentence(rng) if i % 10 else "   "}  # every 10th record is blank

  data_dir = str(tmp_path_factory.mktemp("tfds_text"))
  TinyText(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return data_dir


def test_tfds_text_reads_documents_with_a_test_split(tfds_text_dir, tmp_path):
  dataset = DATASETS.build(
    "tfds_text",
    {
      "dataset": "tiny_text",
      "data_dir": tfds_text_dir,
      "test_split": "test",
      "seq_len": 16,
      "vocab_size": 40,
    },
    str(tmp_path),
  )
  info = dataset.info
  # Blank records are skipped: 54 of 60 train records and 10 of 12 test records are text.
  assert info["num_train_documents"] == 54 and info["num_test_documents"] == 10
  rows = {key: np.asarray(value) for key, value in dataset.split("train").items()}
  assert rows["tokens"].shape[1] == 16 and set(rows) == {"tokens", "segment_ids", "positions"}
  # Every train sentence is in the packed rows: decode them and find all of its words.
  tokenizer = load_tokenizer(info["tokenizer_path"])
  text = tokenizer.decode(rows["tokens"].ravel().tolist())
  assert set(text.split()) <= set(WORDS) and len(set(text.split())) == len(WORDS)
  # One [CLS] per document.
  assert (rows["tokens"] == info["cls_id"]).sum() == 54


def test_tfds_text_hash_split_and_document_cap(tfds_text_dir, tmp_path):
  dataset = DATASETS.build(
    "tfds_text",
    {
      "dataset": "tiny_text",
      "data_dir": tfds_text_dir,
      "max_documents": 40,
      "test_percent": 20,
      "seq_len": 16,
      "vocab_size": 40,
    },
    str(tmp_path),
  )
  info = dataset.info
  assert info["num_train_documents"] + info["num_test_documents"] == 36  # 40 records, 4 blank
  assert info["num_test_documents"] > 0
  # Cut into many record-range shards (tokenized in two worker processes, each opening the
  # dataset itself), the same documents land in the same splits, one [CLS] each.
  sharded = DATASETS.build(
    "tfds_text",
    {
      "dataset": "tiny_text",
      "data_dir": tfds_text_dir,
      "max_documents": 40,
      "test_percent": 20,
      "seq_len": 16,
      "tokenizer_path": info["tokenizer_path"],
      "shard_mb": 0.0005,
      "tokenize_workers": 2,
    },
    str(tmp_path / "sharded"),
  )
  for split, key in (("train", "num_train_documents"), ("test", "num_test_documents")):
    assert sharded.info[key] == info[key]
    tokens = np.asarray(sharded.split(split)["tokens"])
    assert (tokens == info["cls_id"]).sum() == info[key]
  assert sharded.info["token_cache"] != info["token_cache"]  # another shard size, another key


def test_tfds_text_errors(tfds_text_dir, tmp_path):
  with pytest.raises(ValueError, match=r"no feature 'content'.*\['text'\]"):
    DATASETS.build(
      "tfds_text",
      {"dataset": "tiny_text", "data_dir": tfds_text_dir, "text_key": "content"},
      str(tmp_path),
    )
  with pytest.raises(ValueError, match=r"no split 'validation'.*\['test', 'train'\]"):
    DATASETS.build(
      "tfds_text",
      {
        "dataset": "tiny_text",
        "data_dir": tfds_text_dir,
        "test_split": "validation",
        "vocab_size": 40,
      },
      str(tmp_path),
    )
  with pytest.raises(FileNotFoundError, match="tfds build lm1b --file_format=array_record"):
    DATASETS.build("tfds_text", {"dataset": "lm1b", "data_dir": str(tmp_path)}, str(tmp_path))

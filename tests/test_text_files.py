"""The user's own corpus: text and JSONL files written by the test."""

import json

import numpy as np
import pytest

from ssl_jax.data import tokenizer
from ssl_jax.data.text_corpus import is_test_document
from ssl_jax.registry import DATASETS

SENTENCES = [
  f"Sentence number {i} talks about {w} and {v} in plain English."
  for i, (w, v) in enumerate(
    zip(["cats", "dogs", "birds", "fish", "trees"] * 12, ["rain", "sun", "snow", "wind"] * 15)
  )
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("corpus")
  (root / "a.txt").write_text("\n".join(SENTENCES[:30]) + "\n\n")
  (root / "b.txt").write_text("\n".join(SENTENCES[30:]))
  with open(root / "c.jsonl", "w") as f:
    for i, s in enumerate(SENTENCES):
      f.write(json.dumps({"id": i, "body": s}) + "\n")
  return root


def _build(options, workdir):
  return DATASETS.build(
    "text_files", {"seq_len": 16, "vocab_size": 40, "test_percent": 20, **options}, str(workdir)
  )


def test_lines_format_one_document_per_line_split_by_name(corpus, tmp_path):
  data = _build({"paths": str(corpus / "*.txt")}, tmp_path)
  # Named relative to the files' common directory, so the split does not depend on it.
  names = [f"a.txt:{i + 1}" for i in range(30)] + [f"b.txt:{i + 1}" for i in range(30)]
  expected_test = sum(is_test_document(n, 20) for n in names)
  assert data.info["num_test_documents"] == expected_test
  assert data.info["num_train_documents"] == 60 - expected_test
  rows = np.asarray(data.split("train")["tokens"])
  assert np.sum(rows == tokenizer.CLS_ID) == 60 - expected_test  # one [CLS] per document
  assert (tmp_path / "tokenizer.model").exists()
  # Decoding the train rows gives back the train sentences.
  tok = tokenizer.load_tokenizer(str(tmp_path / "tokenizer.model"))
  text = tok.decode(rows.ravel().tolist())
  train_sentences = [s for n, s in zip(names, SENTENCES) if not is_test_document(n, 20)]
  assert all(s.replace(" ", "") in text.replace(" ", "") for s in train_sentences[:5])


def test_jsonl_and_file_formats(corpus, tmp_path):
  jsonl = _build(
    {"paths": str(corpus / "c.jsonl"), "format": "jsonl", "text_key": "body"}, tmp_path / "j"
  )
  assert jsonl.info["num_train_documents"] + jsonl.info["num_test_documents"] == 60
  # One document per file, named by its path under the files' common directory.
  text = (corpus / "a.txt").read_text()
  for i in range(20):
    (tmp_path / "docs" / f"part{i % 2}").mkdir(parents=True, exist_ok=True)
    (tmp_path / "docs" / f"part{i % 2}" / f"doc{i}.txt").write_text(text)
  whole = _build(
    {"paths": str(tmp_path / "docs" / "part*" / "doc*.txt"), "format": "file", "test_percent": 50},
    tmp_path / "f",
  )
  expected_test = sum(is_test_document(f"part{i % 2}/doc{i}.txt", 50) for i in range(20))
  assert 0 < expected_test < 20
  assert whole.info["num_test_documents"] == expected_test
  assert whole.info["num_train_documents"] == 20 - expected_test


def test_bad_corpus_input_names_the_problem(corpus, tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing_here"):
    _build({"paths": str(tmp_path / "nothing_here*.txt")}, tmp_path)
  with pytest.raises(ValueError, match="Unknown config.data.format 'csv'.*'jsonl'"):
    _build({"paths": str(corpus / "a.txt"), "format": "csv"}, tmp_path)
  with pytest.raises(ValueError, match=r"c.jsonl:1 has no field 'text'.*\['body', 'id'\]"):
    _build({"paths": str(corpus / "c.jsonl"), "format": "jsonl"}, tmp_path)
  (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{not json\n')
  with pytest.raises(ValueError, match="broken.jsonl:2 is not valid JSON"):
    _build({"paths": str(tmp_path / "broken.jsonl"), "format": "jsonl"}, tmp_path)
  with pytest.raises(ValueError, match="vocab_size=5000 is too large.*at most"):
    _build({"paths": str(corpus / "a.txt"), "vocab_size": 5000}, tmp_path / "big")
  with pytest.raises(ValueError, match=r"vocab_size=10 is too small.*need \d+ pieces"):
    _build({"paths": str(corpus / "a.txt"), "vocab_size": 10}, tmp_path / "small")
  (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
  with pytest.raises(ValueError, match="latin1.txt is not UTF-8"):
    _build({"paths": str(tmp_path / "latin1.txt")}, tmp_path)

"""Labelled text sources: the docstring-package task and the user's CSV / JSONL files."""

import json

import numpy as np
import pytest

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.python_text import python_documents
from ssl_jax.data.text_classification import (
  PACKAGES,
  package_examples,
  package_of,
  python_packages,
  split_examples,
  text_classification_files,
)
from ssl_jax.data.text_corpus import is_test_document
from ssl_jax.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
  return python_packages(str(tmp_path_factory.mktemp("packages")), seq_len=32, vocab_size=500)


def test_python_packages_labels_splits_and_balance(packages):
  info = packages.info
  assert info["class_names"] == list(PACKAGES) and info["num_classes"] == 10
  documents = [
    (name, text) for name, text in python_documents(True) if package_of(name) in PACKAGES
  ]
  counts = info["class_counts"]
  assert 0.9 * len(documents) < sum(sum(c) for c in counts.values()) <= len(documents)
  # Every class has examples in train; the test split is python_text's held-out 10%.
  assert min(counts["train"]) > 50
  assert sum(counts["test"]) == packages.num_examples("test") > 100
  for split in ("train", "validation", "test"):
    rows = packages.split(split)
    assert rows["tokens"].shape == (len(rows["label"]), 32)
    assert (rows["tokens"][:, 0] == tok.CLS_ID).all()
    np.testing.assert_array_equal(np.bincount(rows["label"], minlength=10), counts[split])


def test_no_text_is_in_two_splits_and_test_texts_were_held_out_of_pretraining():
  examples = package_examples()
  splits = split_examples(examples, PACKAGES, 10, 10, "python_packages")
  texts = {split: [text for text, _ in rows] for split, rows in splits.items()}
  for split, split_texts in texts.items():
    assert len(set(split_texts)) == len(split_texts), split
  assert not set(texts["train"]) & set(texts["test"])
  assert not set(texts["train"]) & set(texts["validation"])
  assert not set(texts["validation"]) & set(texts["test"])
  # python_text holds out a document by the same hash of its name: no copy of a test text
  # (in any package) is in the pretraining train documents.
  pretraining = {text for name, text in python_documents(True) if not is_test_document(name, 10)}
  assert not set(texts["test"]) & pretraining
  labelled = [e for e in examples if e[2] is not None]
  merged = len(labelled) - sum(len(t) for t in texts.values())
  assert 0 < merged < 0.1 * len(labelled)  # inherited docstrings are merged; there are few


def test_copies_with_different_labels_are_dropped():
  examples = [
    ("a", "same text", "x"),
    ("b", "same text", "y"),
    ("c", "other", "x"),
    ("d", "seen", "y"),
    ("e", "seen", None),
  ]
  splits = split_examples(examples, ["x", "y"], 0, 0, "toy")
  assert splits == {"train": [("other", 0), ("seen", 1)], "validation": [], "test": []}
  with pytest.raises(ValueError, match=r"label 'z', not one of \['x', 'y'\]"):
    split_examples([("d", "t", "z")], ["x", "y"], 0, 0, "toy")


def test_rows_are_cut_to_length_with_sep_last(packages):
  tokens = packages.split("train")["tokens"]
  full = tokens[:, -1] != tok.PAD_ID
  assert full.any() and (tokens[full, -1] == tok.SEP_ID).all()
  short = ~full
  lengths = (tokens[short] != tok.PAD_ID).sum(1)
  assert (tokens[short][np.arange(short.sum()), lengths - 1] == tok.SEP_ID).all()


def _write_labelled(tmp_path):
  tmp_path.mkdir(parents=True, exist_ok=True)
  words = {"sports": "ball goal team match score player", "weather": "rain sun cloud wind storm"}
  rows = [
    (label, " ".join(np.random.default_rng(i).permutation(words[label].split())) + f" n{i}")
    for i, label in enumerate(["sports", "weather"] * 30)
  ]
  csv_path = tmp_path / "a.csv"
  csv_path.write_text("text,label\n" + "".join(f"{t},{y}\n" for y, t in rows[:40]))
  jsonl_path = tmp_path / "b.jsonl"
  jsonl_path.write_text("".join(json.dumps({"review": t, "y": y}) + "\n" for y, t in rows[40:]))
  return csv_path, jsonl_path


def test_csv_and_jsonl_labelled_files(tmp_path):
  csv_path, jsonl_path = _write_labelled(tmp_path)
  data = text_classification_files(
    str(tmp_path), paths=str(csv_path), seq_len=12, vocab_size=36, test_percent=30
  )
  assert data.info["class_names"] == ["sports", "weather"]
  assert sum(sum(c) for c in data.info["class_counts"].values()) == 40
  jsonl = text_classification_files(
    None,
    paths=str(jsonl_path),
    text_key="review",
    label_key="y",
    seq_len=12,
    vocab_size=36,
    tokenizer_path=data.info["tokenizer_path"],
    test_percent=30,
  )
  assert sum(sum(c) for c in jsonl.info["class_counts"].values()) == 20
  assert jsonl.info["tokenizer_path"] == data.info["tokenizer_path"]


def test_labelled_file_split_does_not_depend_on_the_directory(tmp_path):
  """The split hashes file name and line, so a copied dataset splits the same way (and the
  tokenizer trained on its train split is the same)."""
  splits = []
  for directory in ("one", "elsewhere/two"):
    csv_path, _ = _write_labelled(tmp_path / directory)
    data = text_classification_files(
      None, paths=str(csv_path), seq_len=12, vocab_size=36, test_percent=30
    )
    splits.append(
      {split: np.asarray(data.split(split)["tokens"]) for split in ("train", "validation", "test")}
    )
  assert len(splits[0]["test"]) > 0 and len(splits[0]["validation"]) > 0
  for split in splits[0]:
    np.testing.assert_array_equal(splits[0][split], splits[1][split])


def test_labelled_file_errors_name_the_problem(tmp_path):
  csv_path, jsonl_path = _write_labelled(tmp_path)
  with pytest.raises(ValueError, match=r"no column 'body' \(columns: \['text', 'label'\]\)"):
    text_classification_files(None, paths=str(csv_path), text_key="body")
  with pytest.raises(ValueError, match="needs fields 'text' and 'label'"):
    text_classification_files(None, paths=str(jsonl_path))
  other = tmp_path / "c.txt"
  other.write_text("x")
  with pytest.raises(ValueError, match="must be a .csv or .jsonl file"):
    text_classification_files(None, paths=str(other))
  with pytest.raises(FileNotFoundError, match="matches no file"):
    text_classification_files(None, paths=str(tmp_path / "missing.csv"))


def test_rows_without_a_label_are_an_error_naming_the_line_unless_dropped(tmp_path, capsys):
  csv_path, jsonl_path = _write_labelled(tmp_path)
  rows = csv_path.read_text().splitlines()
  # Line 3 loses its label (empty), line 5 its label column (a short row).
  rows[2] = rows[2].rsplit(",", 1)[0] + ","
  rows[4] = rows[4].rsplit(",", 1)[0]
  csv_path.write_text("\n".join(rows) + "\n")
  with pytest.raises(DataError, match=rf"{csv_path}:3 has an empty label \('label': ''\)"):
    text_classification_files(None, paths=str(csv_path), seq_len=12, vocab_size=36)
  dropped = text_classification_files(
    None, paths=str(csv_path), seq_len=12, vocab_size=36, test_percent=30, missing_labels="drop"
  )
  assert sum(sum(c) for c in dropped.info["class_counts"].values()) == 38
  assert "Dropped 2 rows without a label" in capsys.readouterr().out
  lines = jsonl_path.read_text().splitlines()
  record = json.loads(lines[1])
  record["y"] = None
  lines[1] = json.dumps(record)
  jsonl_path.write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=rf"{jsonl_path}:2 has a null label \('y': None\)"):
    text_classification_files(None, paths=str(jsonl_path), text_key="review", label_key="y")
  with pytest.raises(ConfigError, match=r"missing_labels='keep'; valid: \['error', 'drop'\]"):
    text_classification_files(None, paths=str(jsonl_path), missing_labels="keep")

"""Sentence-pair classification: the pair row layout and its token types, longest-first
truncation, the offline same-package pairs, users' CSV / JSONL pairs with clear errors, and a
classifier that must read both texts to learn the label."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config, override

from ssl_jax import train
from ssl_jax.data import text_pairs as tp
from ssl_jax.data import tokenizer as tok
from ssl_jax.errors import UserError
from ssl_jax.tasks.classification import pair_token_types

WORDS = ["red", "green", "blue", "cat"]


def test_longest_first_truncation_keeps_both_beginnings():
  a, b = tp.fit_pair(list(range(10)), [20, 21, 22], 8)
  assert a == [0, 1, 2, 3, 4] and b == [20, 21, 22]
  a, b = tp.fit_pair([1, 2, 3], [4, 5, 6, 7], 4)
  assert a == [1, 2] and b == [4, 5]  # ties cut b, then a
  assert tp.fit_pair([1], [2], 5) == ([1], [2])


def test_types_follow_the_pair_layout():
  rows = jnp.array([[2, 9, 9, 3, 8, 3, 0], [2, 9, 3, 0, 0, 0, 0]])
  np.testing.assert_array_equal(
    pair_token_types(rows, 3), [[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]]
  )


def test_same_package_pairs_are_balanced_and_stay_in_their_split():
  by_split = {
    "train": [("a1", 0), ("a2", 0), ("b1", 1), ("b2", 1), ("b3", 1)],
    "test": [("a9", 0), ("a8", 0), ("b9", 1)],
  }
  pairs = tp.package_pairs(by_split, seed=0)
  for split, rows in pairs.items():
    texts = {text for text, _ in by_split[split]}
    labels = [label for _, label in rows]
    assert labels.count(0) == labels.count(1)
    for pair, label in rows:
      a, b = pair.split(tp.SEPARATOR)
      assert a in texts and b in texts and a != b
      assert (a[0] == b[0]) == bool(label)
  assert len(pairs["test"]) == 4  # b9 has no same-package partner in test: no pair of its own


def test_offline_pairs_hold_out_the_test_docstrings():
  dataset = tp.python_same_package(vocab_size=300)
  counts = dataset.info["class_counts"]
  assert all(c[0] == c[1] for c in counts.values()) and counts["test"][0] > 100
  rows = dataset.splits["test"]["tokens"]
  assert (rows[:, 0] == tok.CLS_ID).all() and ((rows == tok.SEP_ID).sum(1) == 2).all()
  assert dataset.info["num_token_types"] == 2


def write_pairs(path, count, seed):
  """Label "same" when both texts start with the same word: only both texts together tell."""
  rng = np.random.default_rng(seed)
  rows = []
  for _ in range(count):
    a = list(rng.choice(WORDS, 3))
    b = list(rng.choice(WORDS, 3))
    if rng.random() < 0.5:
      b[0] = a[0]
    rows.append(
      {"first": " ".join(a), "second": " ".join(b), "y": "same" if a[0] == b[0] else "no"}
    )
  path.write_text("\n".join(json.dumps(row) for row in rows))
  return str(path)


@pytest.mark.e2e
def test_a_classifier_reads_both_texts_of_the_pair(tmp_path):
  paths = write_pairs(tmp_path / "pairs.jsonl", 1200, 0)
  config = load_config("pair_python_packages")
  config.task_kwargs.init_from = ""
  config.model_kwargs = dict(width=32, depth=2, num_heads=2, mlp_dim=64)
  config.data = dict(
    name="text_pair_files",
    paths=paths,
    text_a_key="first",
    text_b_key="second",
    label_key="y",
    seq_len=16,
    vocab_size=21,
    test_percent=20,
  )
  config = override(
    config,
    {"optim.learning_rate": 3e-3, "total_steps": 400, "checkpoint_every": 400, "batch_size": 64},
  )
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  table = results["evals"]["classification"]
  assert table["classification"]["test acc"] > 0.9
  assert table["majority class"]["test acc"] < 0.6


def test_bad_pair_files_are_named(tmp_path):
  csv_path = tmp_path / "pairs.csv"
  csv_path.write_text("text_a,label\nhello,1\n")
  with pytest.raises(UserError, match=r"no column 'text_b'.*text_a_key / text_b_key"):
    tp.text_pair_files(str(tmp_path), paths=str(csv_path))
  jsonl = tmp_path / "pairs.jsonl"
  jsonl.write_text('{"text_a": "x", "text_b": "y", "label": "a"}\n{"text_a": "x", "label": "b"}\n')
  with pytest.raises(UserError, match=r"pairs.jsonl:2 needs fields 'text_a', 'text_b' and 'label'"):
    tp.text_pair_files(str(tmp_path), paths=str(jsonl))
  jsonl.write_text('{"text_a": "x", "text_b": "y", "label": null}\n')
  with pytest.raises(UserError, match=r"pairs.jsonl:1 has a null label"):
    tp.text_pair_files(str(tmp_path), paths=str(jsonl))
  with pytest.raises(UserError, match="text_a_key and text_b_key are both 'a'"):
    tp.text_pair_files(str(tmp_path), paths=str(jsonl), text_a_key="a", text_b_key="a")

"""The NSP / SOP pair builder (BERT's create_pretraining_data logic): lengths, label balance,
truncation side, true continuations, splits kept apart; the sentence splitter; and the
bert_pretraining task's joint loss on pair rows from the user's files."""

import random
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from conftest import load_config

from ssl_jax import parallel, train
from ssl_jax.data import tokenizer as tok
from ssl_jax.data.pair_corpus import text_file_pairs
from ssl_jax.data.sentence_pairs import (
  build_pairs,
  pair_rows,
  split_sentences,
  truncate_seq_pair,
)
from ssl_jax.data.text_corpus import is_test_document
from ssl_jax.errors import ConfigError


def numbered_documents(num_documents=40, seed=0, lengths=(3, 9), sentences=(2, 12)):
  """Documents whose token d * 10_000 + k is the k-th token of document d: where a token came
  from (document, position) can be read off it."""
  rng = np.random.default_rng(seed)
  documents = []
  for d in range(num_documents):
    position, document = 0, []
    for _ in range(rng.integers(*sentences)):
      n = int(rng.integers(*lengths))
      document.append([d * 10_000 + position + k for k in range(n)])
      position += n
    documents.append(document)
  return documents


def origin(tokens):
  return {t // 10_000 for t in tokens}, [t % 10_000 for t in tokens]


def contiguous(positions):
  return positions == list(range(positions[0], positions[0] + len(positions)))


@pytest.mark.parametrize("objective", ["nsp", "sop"])
def test_pairs_fit_the_row_and_labels_are_balanced(objective):
  pairs = build_pairs(numbered_documents(), objective, 32, short_seq_prob=0.1, passes=40)
  assert len(pairs) > 2000
  assert max(len(a) + len(b) for a, b, _ in pairs) <= 32 - 3
  assert min(min(len(a), len(b)) for a, b, _ in pairs) >= 1
  labels = np.array([label for _, _, label in pairs])
  if objective == "sop":
    assert abs(labels.mean() - 0.5) < 0.03
  else:  # 0.5, plus the one-sentence chunks (always random): more than half are random
    assert 0.5 < labels.mean() < 0.65


def test_nsp_label_rate_is_berts_rule():
  """Two-sentence documents shorter than the row: the chunk is the whole document. With
  probability 0.5 B is the second sentence (label 0); otherwise B is random and the second
  sentence, put back, is a one-sentence chunk: random again. So 2/3 of the labels are 1."""
  documents = numbered_documents(num_documents=400, lengths=(3, 6), sentences=(2, 3))
  pairs = build_pairs(documents, "nsp", 32, short_seq_prob=0.0, passes=10)
  labels = np.array([label for _, _, label in pairs])
  assert len(labels) > 5000
  assert abs(labels.mean() - 2 / 3) < 0.015
  row_tokens = SimpleNamespace(pad_id=0, cls_id=2, sep_id=3)  # sentencepiece's ids
  rows = pair_rows(pairs, 32, row_tokens)
  assert rows["tokens"].shape == rows["token_types"].shape == (len(pairs), 32)
  # [CLS] A [SEP] B [SEP]: types 0 through the first [SEP], 1 on B and the last [SEP].
  a, b, _ = pairs[0]
  expected = [0] * (len(a) + 2) + [1] * (len(b) + 1)
  np.testing.assert_array_equal(rows["token_types"][0, : len(expected)], expected)
  np.testing.assert_array_equal(rows["token_types"][0, len(expected) :], 0)
  assert rows["tokens"][0, 0] == tok.CLS_ID and rows["tokens"][0, len(a) + 1] == tok.SEP_ID


def test_sop_pairs_are_true_continuations_in_or_out_of_order():
  pairs = build_pairs(numbered_documents(), "sop", 24, passes=5)
  for a, b, label in pairs:
    (doc_a,), positions_a = origin(a)
    (doc_b,), positions_b = origin(b)
    assert doc_a == doc_b and contiguous(positions_a) and contiguous(positions_b)
    first, second = (positions_a, positions_b) if label == 0 else (positions_b, positions_a)
    assert first[-1] < second[0]


def test_nsp_continuations_follow_and_random_pairs_cross_documents():
  pairs = build_pairs(numbered_documents(), "nsp", 24, passes=5)
  for a, b, label in pairs:
    docs_a, positions_a = origin(a)
    docs_b, positions_b = origin(b)
    assert len(docs_a) == 1 and len(docs_b) == 1 and contiguous(positions_a)
    if label == 0:
      assert docs_a == docs_b and positions_a[-1] < positions_b[0]
    else:
      assert docs_a != docs_b


def test_truncation_trims_the_longer_side_at_a_random_end():
  rng = random.Random(0)
  fronts = trials = 0
  for _ in range(2000):
    a, b = list(range(10)), list(range(100, 103))
    truncate_seq_pair(a, b, 12, rng)
    assert len(a) == 9 and b == [100, 101, 102]  # only the longer side lost a token
    fronts += a[0] == 1
    trials += 1
  assert abs(fronts / trials - 0.5) < 0.04
  # Both sides shrink when both are long; the total is exact.
  a, b = list(range(20)), list(range(100, 120))
  truncate_seq_pair(a, b, 15, rng)
  assert len(a) + len(b) == 15 and abs(len(a) - len(b)) <= 1


def test_truncation_happens_in_built_pairs_on_both_sides():
  documents = numbered_documents(lengths=(8, 14), sentences=(3, 6))
  pairs = build_pairs(documents, "sop", 20, short_seq_prob=0.0, passes=10)
  # A truncated A or B is a slice of its sentences that no longer starts (or ends) at one.
  starts = {s[0] for d in documents for s in d}
  ends = {s[-1] for d in documents for s in d}
  trimmed_front = sum(a[0] not in starts or b[0] not in starts for a, b, _ in pairs)
  trimmed_back = sum(a[-1] not in ends or b[-1] not in ends for a, b, _ in pairs)
  assert len(pairs) > 200
  assert trimmed_front > 0.2 * len(pairs) and trimmed_back > 0.2 * len(pairs)


def test_bad_objective_and_tiny_rows_are_refused():
  with pytest.raises(ConfigError, match=r"'mlm'.*\['nsp', 'sop'\]"):
    build_pairs(numbered_documents(), "mlm", 32)
  with pytest.raises(ConfigError, match="seq_len=4"):
    build_pairs(numbered_documents(), "nsp", 4)


def test_sentence_splitter():
  text = (
    "Return the value. It may be None!\nIs it? yes it is.\n\n"
    'New paragraph (e.g. this one) ends "here." Then 3 more.'
  )
  assert split_sentences(text) == [
    "Return the value.",
    "It may be None!",
    "Is it? yes it is.",
    'New paragraph (e.g. this one) ends "here."',
    "Then 3 more.",
  ]


WORDS = "alpha beta gamma delta omega sigma kappa theta lambda zeta".split()


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
  root = tmp_path_factory.mktemp("pair_docs")
  rng = np.random.default_rng(0)
  for d in range(60):
    sentences = [
      " ".join(rng.choice(WORDS, rng.integers(3, 8))).capitalize() + f" {d}."
      for _ in range(rng.integers(2, 7))
    ]
    (root / f"doc{d:02d}.txt").write_text(" ".join(sentences))
  return root


def test_no_pair_crosses_the_held_out_split(pair_files, tmp_path):
  data = text_file_pairs(
    str(tmp_path), paths=str(pair_files / "*.txt"), seq_len=40, vocab_size=60, test_percent=30
  )
  tokenizer = tok.load_tokenizer(data.info["tokenizer_path"])
  texts = {"train": [], "test": []}
  for path in sorted(pair_files.glob("*.txt")):
    texts["test" if is_test_document(path.name, 30) else "train"].append(path.read_text())
  assert texts["train"] and texts["test"]
  corpus = {split: "\n".join(docs) for split, docs in texts.items()}
  only_here = 0
  for split, other in (("test", "train"), ("train", "test")):
    rows = data.split(split)
    for row, types in zip(rows["tokens"], rows["token_types"]):
      for segment in (0, 1):
        ids = [int(t) for t, y in zip(row, types) if y == segment and t > tok.MASK_ID]
        text = " ".join(tokenizer.decode(ids).split())
        # Both A and B are (possibly truncated) spans of their own split's documents.
        assert text in corpus[split], (split, text)
        only_here += text not in corpus[other]
  # The check discriminates: nearly every span exists in one split only.
  total = 2 * (data.num_examples("train") + data.num_examples("test"))
  assert only_here > 0.9 * total


def test_joint_loss_is_mlm_plus_weighted_pair_loss(pair_files, tmp_path):
  config = load_config("bert_nsp_python")
  config.model_kwargs.update(dict(width=32, depth=1, num_heads=4, mlp_dim=64))
  config.data = dict(
    name="text_file_pairs", paths=str(pair_files / "*.txt"), seq_len=32, vocab_size=60
  )
  config.task_kwargs.pair_weight = 0.5
  config.update(dict(batch_size=16, eval_batch_size=16, total_steps=2))
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, str(tmp_path), mesh)
    params, model_state = run.state.params, run.state.model_state
    assert params["encoder"]["type_embed"].shape == (2, 32)
    loss, (metrics, _) = jax.jit(run.task.loss_fn)(
      params, model_state, run.example, jax.random.key(0), 0
    )
  metrics = jax.device_get(metrics)
  assert set(metrics) >= {"mlm_loss", "nsp_loss", "nsp_accuracy", "masked_accuracy"}
  np.testing.assert_allclose(loss, metrics["mlm_loss"] + 0.5 * metrics["nsp_loss"], rtol=1e-6)
  assert 0.3 < metrics["nsp_loss"] < 1.5  # about log 2 at initialisation

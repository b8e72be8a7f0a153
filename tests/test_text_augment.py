"""Text label augmentation: deletion, substitution and span shuffling on packed rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import text_augment as ta
from ssl_jax.registry import ConfigError

PAD, CLS, SEP, MASK, VOCAB = 0, 2, 3, 4, 60
SPECIAL = (PAD, CLS, SEP, MASK)


def _rows(num_rows=64, length=48, seed=0):
  """Packed rows: documents [CLS] words [SEP] of random lengths, padding at the end."""
  rng = np.random.default_rng(seed)
  tokens = np.zeros((num_rows, length), np.int32)
  segments = np.zeros((num_rows, length), np.int32)
  for r in range(num_rows):
    at, segment = 0, 1
    while at < length - 8:
      n = min(int(rng.integers(3, 12)), length - at - 2)
      doc = [CLS] + list(rng.integers(5, VOCAB, n)) + [SEP]
      tokens[r, at : at + len(doc)] = doc
      segments[r, at : at + len(doc)] = segment
      at, segment = at + len(doc), segment + 1
  segments = jnp.asarray(segments)
  return {
    "tokens": jnp.asarray(tokens),
    "segment_ids": segments,
    "positions": ta.positions_from_segments(segments),
  }


def _documents(batch):
  """Per row, the list of documents as token lists (by segment id)."""
  tokens, segments = np.asarray(batch["tokens"]), np.asarray(batch["segment_ids"])
  return [
    [tokens[r][segments[r] == s].tolist() for s in range(1, segments[r].max() + 1)]
    for r in range(len(tokens))
  ]


def test_positions_restart_at_each_segment():
  np.testing.assert_array_equal(
    ta.positions_from_segments(jnp.array([[1, 1, 1, 2, 2, 0, 0]])), [[0, 1, 2, 0, 1, 0, 0]]
  )


def test_deletion_closes_up_each_document_and_keeps_specials():
  batch = _rows()
  out = ta.delete(jax.random.key(0), batch, 0.3, SPECIAL, PAD)
  deleted = total = 0
  for before_docs, after_docs in zip(_documents(batch), _documents(out)):
    assert len(before_docs) == len(after_docs)
    for before, after in zip(before_docs, after_docs):
      assert after[0] == CLS and after[-1] == SEP
      # The survivors are a subsequence of the document, in order.
      it = iter(before)
      assert all(token in it for token in after)
      deleted += len(before) - len(after)
      total += len(before) - 2
  assert abs(deleted / total - 0.3) < 0.03
  np.testing.assert_array_equal(out["positions"], ta.positions_from_segments(out["segment_ids"]))
  # Freed slots are padding with segment 0.
  assert not np.asarray(out["tokens"])[np.asarray(out["segment_ids"]) == 0].any()


def test_substitution_rate_and_only_regular_tokens_change():
  batch = _rows()
  out = ta.substitute(jax.random.key(1), batch, 0.2, SPECIAL, VOCAB)
  before, after = np.asarray(batch["tokens"]), np.asarray(out["tokens"])
  regular = ~np.isin(before, SPECIAL)
  np.testing.assert_array_equal(after[~regular], before[~regular])
  changed = (after != before)[regular].mean()
  assert abs(changed - 0.2 * (1 - 1 / (VOCAB - 5))) < 0.02
  assert not np.isin(after[regular], SPECIAL).any()


def test_span_shuffle_permutes_whole_spans_inside_each_document():
  batch = _rows()
  out = ta.shuffle_spans(jax.random.key(2), batch, 3, SPECIAL)
  moved = 0
  for before_docs, after_docs in zip(_documents(batch), _documents(out)):
    for before, after in zip(before_docs, after_docs):
      assert after[0] == CLS and after[-1] == SEP
      # Spans of 3 counted from the document start ([CLS] is position 0): [CLS, a, b], [c, d, e]..
      spans = lambda doc: sorted(
        tuple(t for t in doc[i : i + 3] if t not in SPECIAL) for i in range(0, len(doc), 3)
      )
      assert spans(before) != [] and sorted(before) == sorted(after)
      regular_after = [t for t in after if t not in SPECIAL]
      # The shuffled document is a concatenation of the original spans in some order.
      pieces = [list(p) for p in spans(before) if p]
      rebuilt, rest = [], regular_after
      while rest:
        match = sorted((p for p in pieces if rest[: len(p)] == p), key=len, reverse=True)
        assert match, (before, after)
        rebuilt += match[0]
        pieces.remove(match[0])
        rest = rest[len(match[0]) :]
      moved += before != after
  assert moved > 20
  np.testing.assert_array_equal(out["segment_ids"], batch["segment_ids"])


def test_augmentation_is_deterministic_per_key_and_configured_by_name():
  batch = _rows(8)
  cfg = ta.text_augment_config(
    {"deletion_rate": 0.1, "substitution_rate": 0.1, "span_shuffle_length": 2}
  )
  run = lambda seed: ta.augment_text(jax.random.key(seed), batch, cfg, SPECIAL, VOCAB, PAD)
  np.testing.assert_array_equal(run(0)["tokens"], run(0)["tokens"])
  assert not np.array_equal(run(0)["tokens"], run(1)["tokens"])
  with pytest.raises(ConfigError, match="deletion_rte"):
    ta.text_augment_config({"deletion_rte": 0.1})


@pytest.mark.e2e
def test_mlm_trains_on_augmented_rows(devices, tmp_path):
  from conftest import tiny_mlm_config

  from ssl_jax import parallel, train

  config = tiny_mlm_config()
  config.augment = {"deletion_rate": 0.1, "span_shuffle_length": 4}
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, str(tmp_path), mesh)
    state, metrics = run.train_step(run.state, run.example)
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1

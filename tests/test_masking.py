"""BERT masking statistics over many draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.tasks.mlm import bert_mask, default_max_predictions, word_ids

PAD, CLS, SEP, MASK, VOCAB = 0, 2, 3, 4, 50
SPECIAL = (PAD, CLS, SEP, MASK)


@pytest.fixture(scope="module")
def masked():
  rng = np.random.default_rng(0)
  batch, length = 256, 64
  tokens = rng.integers(5, VOCAB, size=(batch, length)).astype(np.int32)
  tokens[:, 0] = CLS
  tokens[:, 20] = SEP
  lengths = rng.integers(16, length + 1, size=batch)
  for row, n in enumerate(lengths):
    tokens[row, n:] = PAD  # Ragged padding.
  budget = default_max_predictions(length, 0.15)
  fn = jax.jit(
    lambda key: bert_mask(
      key,
      jnp.asarray(tokens),
      special_ids=SPECIAL,
      mask_id=MASK,
      vocab_size=VOCAB,
      rate=0.15,
      mask_prob=0.8,
      random_prob=0.1,
      max_predictions=budget,
    )
  )
  draws = [jax.device_get(fn(jax.random.key(i))) for i in range(40)]
  return tokens, draws


def test_masking_rate_is_15_percent_of_regular_tokens(masked):
  tokens, draws = masked
  regular = ~np.isin(tokens, SPECIAL)
  chosen = sum(weights.sum() for _, _, _, weights in draws)
  rate = chosen / (regular.sum() * len(draws))
  assert abs(rate - 0.15) < 0.005, rate


def test_80_10_10_split_of_chosen_tokens(masked):
  tokens, draws = masked
  became_mask = became_random = unchanged = 0
  for inputs, positions, targets, weights in draws:
    new = np.take_along_axis(inputs, positions, 1)[weights > 0]
    original = targets[weights > 0]
    became_mask += np.sum(new == MASK)
    unchanged += np.sum(new == original)
    became_random += np.sum((new != MASK) & (new != original))
  total = became_mask + became_random + unchanged
  # A random replacement equal to the original (1 in 45) counts as unchanged.
  assert abs(became_mask / total - 0.8) < 0.01
  assert abs(became_random / total - 0.1 * 44 / 45) < 0.01
  assert abs(unchanged / total - (0.1 + 0.1 / 45)) < 0.01


def test_special_and_padding_tokens_are_never_chosen_or_changed(masked):
  tokens, draws = masked
  special = np.isin(tokens, SPECIAL)
  for inputs, positions, targets, weights in draws:
    chosen_tokens = targets[weights > 0]
    assert not np.isin(chosen_tokens, SPECIAL).any()
    np.testing.assert_array_equal(inputs[special], tokens[special])
    # Only chosen positions differ from the original.
    changed = inputs != tokens
    allowed = np.zeros_like(changed)
    rows = np.repeat(np.arange(len(tokens))[:, None], positions.shape[1], 1)
    allowed[rows[weights > 0], positions[weights > 0]] = True
    assert not (changed & ~allowed).any()
    # Random replacements are regular tokens.
    assert not np.isin(inputs[changed], (PAD, CLS, SEP)).any()


def test_targets_are_the_original_tokens(masked):
  tokens, draws = masked
  for _, positions, targets, weights in draws:
    np.testing.assert_array_equal(
      np.take_along_axis(tokens, positions, 1)[weights > 0], targets[weights > 0]
    )


def test_all_padding_rows_get_no_predictions():
  tokens = jnp.zeros((4, 16), jnp.int32)
  _, _, _, weights = bert_mask(
    jax.random.key(0),
    tokens,
    special_ids=SPECIAL,
    mask_id=MASK,
    vocab_size=VOCAB,
    max_predictions=5,
  )
  assert float(weights.sum()) == 0.0


def _draw(tokens, masking, word_start=None, draws=30):
  budget = default_max_predictions(tokens.shape[1], 0.15)
  fn = jax.jit(
    lambda key: bert_mask(
      key,
      jnp.asarray(tokens),
      special_ids=SPECIAL,
      mask_id=MASK,
      vocab_size=VOCAB,
      rate=0.15,
      mask_prob=0.8,
      random_prob=0.1,
      max_predictions=budget,
      masking=masking,
      word_start=word_start,
    )
  )
  return [jax.device_get(fn(jax.random.key(i))) for i in range(draws)]


def test_exact_masking_chooses_round_15_percent_of_each_row(masked):
  tokens, _ = masked
  expected = np.maximum(np.round(0.15 * (~np.isin(tokens, SPECIAL)).sum(1)), 1)
  for _, _, targets, weights in _draw(tokens, "exact", draws=5):
    np.testing.assert_array_equal(weights.sum(1), expected)
    assert not np.isin(targets[weights > 0], SPECIAL).any()


def test_whole_word_masking_chooses_words_with_all_their_pieces():
  rng = np.random.default_rng(1)
  # Ids 5..19 start a word ("▁the"), ids 20..49 continue one ("ing").
  word_start = np.zeros(VOCAB, bool)
  word_start[list(SPECIAL) + list(range(5, 20))] = True
  tokens = np.where(
    rng.random((128, 64)) < 0.4, rng.integers(5, 20, (128, 64)), rng.integers(20, VOCAB, (128, 64))
  ).astype(np.int32)
  tokens[:, 0] = CLS
  first = np.asarray(word_ids(jnp.asarray(tokens), jnp.asarray(word_start)))
  chosen_total = 0
  for _, positions, _, weights in _draw(tokens, "whole_word", jnp.asarray(word_start)):
    chosen = np.zeros_like(tokens, bool)
    rows = np.repeat(np.arange(len(tokens))[:, None], positions.shape[1], 1)
    chosen[rows[weights > 0], positions[weights > 0]] = True
    for r in range(len(tokens)):
      for word in np.unique(first[r][chosen[r]]):
        members = (first[r] == word) & ~np.isin(tokens[r], SPECIAL)
        assert chosen[r][members].all(), (r, word)  # the whole word, never a part of it
    chosen_total += chosen.sum()
  rate = chosen_total / ((~np.isin(tokens, SPECIAL)).sum() * 30)
  assert abs(rate - 0.15) < 0.01, rate


@pytest.mark.e2e
@pytest.mark.parametrize("masking", ["exact", "whole_word"])
def test_mlm_task_trains_with_each_masking(masking, devices, tmp_path):
  from conftest import tiny_mlm_config

  from ssl_jax import parallel, train

  config = tiny_mlm_config()
  config.task_kwargs.masking = masking
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, str(tmp_path), mesh)
    state, metrics = run.train_step(run.state, run.example)
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
  word_start = run.dataset.info["word_start"]
  assert word_start.shape == (run.dataset.info["vocab_size"],) and 0 < word_start.mean() < 1

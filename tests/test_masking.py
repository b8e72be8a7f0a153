"""BERT masking statistics over many draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.tasks.mlm import bert_mask, default_max_predictions

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
  fn = jax.jit(lambda key: bert_mask(key, jnp.asarray(tokens), special_ids=SPECIAL, mask_id=MASK,
                                     vocab_size=VOCAB, rate=0.15, mask_prob=0.8,
                                     random_prob=0.1, max_predictions=budget))
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
    np.testing.assert_array_equal(np.take_along_axis(tokens, positions, 1)[weights > 0],
                                  targets[weights > 0])


def test_all_padding_rows_get_no_predictions():
  tokens = jnp.zeros((4, 16), jnp.int32)
  _, _, _, weights = bert_mask(jax.random.key(0), tokens, special_ids=SPECIAL, mask_id=MASK,
                               vocab_size=VOCAB, max_predictions=5)
  assert float(weights.sum()) == 0.0

"""The Transformer's own layers: 16-bit dropout and the attention-implementation choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models.transformer import Dropout, TransformerEncoder


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_drops_at_the_rate_and_rescales_the_rest(rate):
  x = jnp.ones((3, 333, 1001))  # odd size: the last 32-bit draw serves one element
  y = np.asarray(
    Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
  )
  dropped = (y == 0).mean()
  # 1e6 Bernoulli draws: the standard error is below 5e-4, so 0.002 is > 4 sigma.
  assert abs(dropped - rate) < 0.002
  np.testing.assert_allclose(np.unique(y), [0.0, 1.0 / (1.0 - rate)], rtol=1e-6)
  # Neighbouring elements share a 32-bit draw but use different halves: independent.
  pairs = (y.reshape(-1)[:-1:2] == 0) & (y.reshape(-1)[1::2] == 0)
  assert abs(pairs.mean() - rate**2) < 0.002


def test_dropout_is_identity_when_deterministic_and_fresh_per_key():
  x = jnp.arange(1.0, 65.0).reshape(8, 8)
  layer = Dropout(0.3)
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
  draw = lambda seed: np.asarray(
    layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(seed)})
  )
  np.testing.assert_array_equal(draw(1), draw(1))
  assert (draw(1) != draw(2)).any()


def test_attention_impl_is_checked_with_the_choices():
  tokens = jnp.zeros((1, 8), jnp.int32)
  init = lambda **kw: TransformerEncoder(vocab_size=20, size="tiny", **kw).init(
    jax.random.key(0), tokens, tokens >= 0, train=False
  )
  with pytest.raises(ValueError, match=r"'flash'.*\['xla', 'cudnn'\]"):
    init(attention_impl="flash")
  with pytest.raises(ValueError, match="cudnn.*bfloat16"):
    init(attention_impl="cudnn")

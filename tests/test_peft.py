"""Bottleneck adapters, prefix tuning and prompt tuning, checked against hand-computed outputs
on tiny modules (the trainer-level checks are in test_classification.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.adapt import bottleneck, prompts
from ssl_jax.models.transformer import Attention, TransformerEncoder

TOKENS = jnp.array([[2, 7, 8, 9, 10, 3, 0, 0], [2, 11, 12, 3, 0, 0, 0, 0]])


@pytest.fixture(scope="module")
def encoder():
  model = TransformerEncoder(
    vocab_size=20, width=16, depth=2, num_heads=2, mlp_dim=32, max_length=8, dropout_rate=0.0
  )
  variables = model.init(jax.random.key(0), TOKENS, TOKENS != 0, train=False)
  return model, variables


def test_adapters_follow_each_sublayer_and_start_as_the_identity(encoder):
  model, variables = encoder
  args = (TOKENS, TOKENS != 0)
  layers = bottleneck.find_layers(model, variables, *args, train=False)
  adapters = bottleneck.init_adapters(jax.random.key(1), layers, bottleneck.AdapterConfig(4))
  assert sorted(adapters) == [
    "block_0/attention/out",
    "block_0/mlp_out",
    "block_1/attention/out",
    "block_1/mlp_out",
  ]
  base = model.apply(variables, *args, train=False)
  np.testing.assert_array_equal(
    bottleneck.apply(model, variables, adapters, *args, train=False), base
  )

  # One adapter with a non-zero up-projection: its layer's output gains
  # up(gelu(down(y))), which the hand computation below reproduces.
  adapter = dict(adapters["block_1/mlp_out"], up=jax.random.normal(jax.random.key(2), (4, 16)))
  only = {"block_1/mlp_out": adapter}
  captured = {}

  def capture(next_fun, call_args, call_kwargs, context):
    out = next_fun(*call_args, **call_kwargs)
    if "/".join(context.module.path) == "block_1/mlp_out" and context.method_name == "__call__":
      captured["y"] = out
    return out

  with nn.intercept_methods(capture):
    model.apply(variables, *args, train=False)
  y = captured["y"]
  expected_update = jax.nn.gelu(y @ adapter["down"] + adapter["down_bias"]) @ adapter["up"]
  adapted = bottleneck.apply(model, variables, only, *args, train=False)
  # Pre-norm: the update enters the residual stream of the last block, then the final norm.
  residual = adapted - base
  assert float(jnp.abs(residual).max()) > 1e-3
  final_norm_input = model.apply(
    variables, *args, train=False, method=lambda m, t, v, train: _stream(m, t, v)
  )
  np.testing.assert_allclose(
    _normalize(final_norm_input + expected_update, variables), adapted, atol=1e-5
  )


def _stream(module, tokens, valid):
  """The residual stream before the final LayerNorm (the encoder without its last step)."""
  captured = {}

  def capture(next_fun, call_args, call_kwargs, context):
    if context.module.name == "final_norm":
      captured["x"] = call_args[0]
    return next_fun(*call_args, **call_kwargs)

  with nn.intercept_methods(capture):
    module(tokens, valid, train=False)
  return captured["x"]


def _normalize(x, variables):
  scale, bias = (variables["params"]["final_norm"][k] for k in ("scale", "bias"))
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / jnp.sqrt(var + 1e-6) * scale + bias


def test_prefix_attention_equals_the_hand_computed_softmax():
  attention = Attention(num_heads=2)
  x = jax.random.normal(jax.random.key(0), (2, 5, 8))
  mask = jnp.broadcast_to(
    jnp.arange(5)[None, None, None, :] < jnp.array([5, 3])[:, None, None, None], (2, 1, 5, 5)
  )
  variables = attention.init(jax.random.key(1), x, mask, False)
  layers = prompts.attention_layers(attention, variables, x, mask, False)
  assert layers == {"": (2, 4)}
  prefixes = prompts.init_prefixes(jax.random.key(2), layers, prompts.PrefixConfig(3, 1.0))
  out = prompts.apply_prefixes(attention, variables, prefixes, x, mask, False)

  p = variables["params"]
  q, k, v = (
    jnp.einsum("bld,dhk->blhk", x, p[name]["kernel"]) + p[name]["bias"]
    for name in ("query", "key", "value")
  )
  k = jnp.concatenate([jnp.broadcast_to(prefixes[""]["key"], (2, 3, 2, 4)), k], 1)
  v = jnp.concatenate([jnp.broadcast_to(prefixes[""]["value"], (2, 3, 2, 4)), v], 1)
  logits = jnp.einsum("bqhk,bshk->bhqs", q, k) / 2.0
  # The prefix is visible to every query; the row's own keys keep their padding mask.
  full_mask = jnp.concatenate([jnp.ones((2, 1, 5, 3), bool), mask], -1)
  weights = jax.nn.softmax(jnp.where(full_mask, logits, -jnp.inf), -1)
  heads = jnp.einsum("bhqs,bshk->bqhk", weights, v)
  expected = jnp.einsum("bqhk,hkd->bqd", heads, p["out"]["kernel"]) + p["out"]["bias"]
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_prompt_tokens_take_reserved_positions(encoder):
  model, variables = encoder
  reserved = prompts.reserve_prompt_positions(TOKENS, 2, placeholder=4)
  np.testing.assert_array_equal(reserved, [[2, 4, 4, 7, 8, 9, 10, 3], [2, 4, 4, 11, 12, 3, 0, 0]])
  layers = prompts.embedding_layers(model, variables, reserved, reserved != 0, train=False)
  assert layers == {"embed": 16}
  prompt = prompts.init_prompts(jax.random.key(3), layers, prompts.PromptConfig(2))
  positions = jnp.broadcast_to(jnp.arange(8), reserved.shape)
  embed = lambda m, t, v, train: m.embed(t, positions)  # noqa: E731
  base = model.apply(variables, reserved, reserved != 0, False, method=embed)
  out = prompts.apply_prompts(
    model, variables, prompt, reserved, reserved != 0, False, method=embed
  )
  np.testing.assert_array_equal(out[:, 1:3], np.broadcast_to(prompt["embed"], (2, 2, 16)))
  np.testing.assert_array_equal(out[:, 0], base[:, 0])
  np.testing.assert_array_equal(out[:, 3:], base[:, 3:])
  with pytest.raises(ValueError, match="leaves no room"):
    prompts.reserve_prompt_positions(TOKENS, 7, placeholder=4)

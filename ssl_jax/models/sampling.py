"""Autoregressive sampling from a `TransformerDecoder` with its key/value cache.

One jitted `lax.scan` over positions: the prompt is fed token by token (filling the cache),
then each step samples the next token (greedy, temperature, top-k, top-p) and feeds it back.
Shapes are static (batch, prompt length, new tokens), so nothing recompiles between calls.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ssl_jax.errors import ConfigError


def filter_logits(logits: jnp.ndarray, top_k: int = 0, top_p: float = 1.0) -> jnp.ndarray:
  """Logits with everything outside the top-k and outside the top-p nucleus set to -inf.

  top_k=0 and top_p=1 keep every token. The nucleus is the smallest set of most likely tokens
  whose probability reaches top_p (the token that crosses top_p is kept).
  """
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, -1)
    probs = jax.nn.softmax(sorted_logits, -1)
    before = jnp.cumsum(probs, -1) - probs  # probability mass ranked above each token
    keep_sorted = before < top_p
    keep = (
      jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
    )
    logits = jnp.where(keep, logits, -jnp.inf)
  return logits


def init_cache(model, batch_size: int, length: int) -> Any:
  """A zeroed key/value cache for `length` positions (shapes only; no parameters built)."""
  tokens = jnp.zeros((batch_size, length), jnp.int32)
  shapes = jax.eval_shape(
    functools.partial(model.init, train=False, decode=True), jax.random.key(0), tokens, tokens >= 0
  )["cache"]
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def decode_step(
  model, params: Any, cache: Any, token: jnp.ndarray, position: jnp.ndarray
) -> tuple[jnp.ndarray, Any]:
  """Logits [batch, vocab] for the next token after `token` [batch] at `position`, and the
  updated cache."""
  hidden, updated = model.apply(
    {"params": params, "cache": cache},
    token[:, None],
    jnp.ones_like(token[:, None], bool),
    train=False,
    positions=jnp.broadcast_to(position, token.shape)[:, None],
    decode=True,
    mutable=["cache"],
  )
  logits = model.apply({"params": params}, hidden[:, 0], method=lambda m, h: m.attend(h))
  return logits.astype(jnp.float32), updated["cache"]


@functools.partial(
  jax.jit, static_argnames=("model", "max_new_tokens", "temperature", "top_k", "top_p")
)
def generate(
  model,
  params: Any,
  prompt: jnp.ndarray,
  rng: jax.Array,
  max_new_tokens: int,
  temperature: float = 1.0,
  top_k: int = 0,
  top_p: float = 1.0,
) -> jnp.ndarray:
  """[batch, prompt_len + max_new_tokens] tokens: the prompt, then sampled continuations.

  temperature=0 is greedy decoding. The total length must fit `model.max_length`.
  """
  batch, prompt_len = prompt.shape
  total = prompt_len + max_new_tokens
  if total > model.max_length:
    raise ConfigError(
      f"prompt {prompt_len} + {max_new_tokens} new tokens exceeds the model's "
      f"max_length {model.max_length}."
    )
  tokens = jnp.zeros((batch, total), jnp.int32).at[:, :prompt_len].set(prompt)

  def step(carry, t):
    tokens, cache = carry
    logits, cache = decode_step(model, params, cache, tokens[:, t], t)
    if temperature == 0.0:
      sampled = jnp.argmax(logits, -1)
    else:
      logits = filter_logits(logits / temperature, top_k, top_p)
      sampled = jax.random.categorical(jax.random.fold_in(rng, t), logits)
    # Inside the prompt the next token is given; after it, the sample is.
    next_token = jnp.where(t + 1 < prompt_len, tokens[:, t + 1], sampled.astype(jnp.int32))
    return (tokens.at[:, t + 1].set(next_token), cache), None

  (tokens, _), _ = jax.lax.scan(
    step, (tokens, init_cache(model, batch, total)), jnp.arange(total - 1)
  )
  return tokens

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


@functools.partial(
  jax.jit,
  static_argnames=(
    "model",
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "eos_id",
    "pad_id",
    "banned_ids",
  ),
)
def sample_completions(
  model,
  params: Any,
  prompts: jnp.ndarray,
  prompt_lengths: jnp.ndarray,
  rng: jax.Array,
  max_new_tokens: int,
  eos_id: int,
  pad_id: int,
  temperature: float = 1.0,
  top_k: int = 0,
  top_p: float = 1.0,
  banned_ids: tuple[int, ...] = (),
) -> dict[str, jnp.ndarray]:
  """Completions of right-padded prompts of different lengths, with their log-probabilities.

  Row r's prompt is `prompts[r, :prompt_lengths[r]]`; its completion starts right after it (no
  padding in between, so positions stay contiguous) and ends with the first `eos_id` or after
  `max_new_tokens` tokens. `banned_ids` (e.g. padding) are never sampled: the policy is the
  model with those logits at -inf, here and in `completion_log_probs`. Returns
    tokens [N, P + C]: prompt, completion, then `pad_id`;
    completions [N, C]: the completion tokens of each row from its first one, then `pad_id`;
    completion_mask [N, C]: True on completion tokens (the EOS included);
    log_probs [N, C]: log-probability of each completion token under the distribution it was
      drawn from (after temperature and top-k / top-p; temperature 0: the greedy model's).
  """
  batch, prompt_len = prompts.shape
  total = prompt_len + max_new_tokens
  if total > model.max_length:
    raise ConfigError(
      f"prompts of {prompt_len} tokens + {max_new_tokens} new tokens exceed the model's "
      f"max_length {model.max_length}."
    )
  lengths = prompt_lengths.astype(jnp.int32)
  tokens = jnp.full((batch, total), pad_id, jnp.int32).at[:, :prompt_len].set(prompts)
  rows = jnp.arange(batch)

  def step(carry, t):
    tokens, log_probs, done, cache = carry
    logits, cache = decode_step(model, params, cache, tokens[:, t], t)
    logits = ban_tokens(logits, banned_ids)
    if temperature == 0.0:
      sampled = jnp.argmax(logits, -1)
      scores = jax.nn.log_softmax(logits, -1)
    else:
      scores = jax.nn.log_softmax(filter_logits(logits / temperature, top_k, top_p), -1)
      sampled = jax.random.categorical(jax.random.fold_in(rng, t), scores)
    sampled = sampled.astype(jnp.int32)
    in_prompt = t + 1 < lengths
    past_limit = t + 1 >= lengths + max_new_tokens
    generating = ~in_prompt & ~done & ~past_limit
    next_token = jnp.where(in_prompt, tokens[:, t + 1], jnp.where(generating, sampled, pad_id))
    log_prob = jnp.where(generating, scores[rows, sampled], 0.0)
    done = done | (generating & (sampled == eos_id))
    tokens = tokens.at[:, t + 1].set(next_token)
    log_probs = log_probs.at[:, t + 1].set(log_prob)
    return (tokens, log_probs, done, cache), generating

  init = (
    tokens,
    jnp.zeros((batch, total), jnp.float32),
    jnp.zeros((batch,), bool),
    init_cache(model, batch, total),
  )
  (tokens, log_probs, _, _), generated = jax.lax.scan(step, init, jnp.arange(total - 1))
  counts = generated.sum(0)  # [N] completion lengths, the EOS included
  index = lengths[:, None] + jnp.arange(max_new_tokens)[None, :]  # < total: lengths <= P
  mask = jnp.arange(max_new_tokens)[None, :] < counts[:, None]
  completions = jnp.where(mask, jnp.take_along_axis(tokens, index, 1), pad_id)
  return {
    "tokens": tokens,
    "completions": completions,
    "completion_mask": mask,
    "log_probs": jnp.where(mask, jnp.take_along_axis(log_probs, index, 1), 0.0),
  }


def ban_tokens(logits: jnp.ndarray, banned_ids: tuple[int, ...]) -> jnp.ndarray:
  """`logits` [..., V] with the `banned_ids` set to -inf."""
  if not banned_ids:
    return logits
  return logits.at[..., jnp.asarray(banned_ids)].set(-jnp.inf)


def completion_log_probs(
  model,
  params: Any,
  tokens: jnp.ndarray,
  prompt_lengths: jnp.ndarray,
  completions: jnp.ndarray,
  banned_ids: tuple[int, ...] = (),
  temperature: float = 1.0,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(log-probabilities [N, C] of each completion token, entropies [N, C] of the model's
  next-token distribution there), teacher-forced on `tokens` (as `sample_completions` lays
  them out), the logits divided by `temperature` (0 or 1: the model as is). The vocabulary is
  projected only at the C completion positions of each row."""
  max_new_tokens = completions.shape[1]
  lengths = prompt_lengths.astype(jnp.int32)
  # Every position up to the last completion slot is attended; the causal mask keeps each
  # prediction to its prefix, so what follows a row's completion never matters.
  valid = jnp.arange(tokens.shape[1])[None, :] < (lengths + max_new_tokens)[:, None]
  hidden = model.apply({"params": params}, tokens, valid, train=False)
  index = lengths[:, None] - 1 + jnp.arange(max_new_tokens)[None, :]
  hidden = jnp.take_along_axis(hidden, index[..., None], 1)
  logits = model.apply({"params": params}, hidden, method=lambda m, h: m.attend(h))
  logits = logits.astype(jnp.float32)
  if temperature not in (0.0, 1.0):
    logits = logits / temperature
  scores = jax.nn.log_softmax(ban_tokens(logits, banned_ids), -1)
  log_probs = jnp.take_along_axis(scores, completions[..., None], -1)[..., 0]
  probs = jnp.exp(scores)
  entropy = -jnp.where(probs > 0, probs * scores, 0.0).sum(-1)  # banned: 0 * -inf
  return log_probs, entropy

"""Prefix tuning (Li & Liang 2021) and prompt tuning (Lester et al. 2021) for the Transformer
models, without touching their code (both run the model under `nn.intercept_methods`).

Prefix tuning: every self-attention layer gets `length` learned key and value vectors per head,
put before the sequence's own keys and values; every query may attend to them (the attention
mask gains `length` always-true columns, so causal and padding masks keep working).
Parameters: {attention path: {"key": [length, heads, head_dim], "value": [...]}}.

Prompt tuning: `length` learned input embeddings. To keep every shape static the task reserves
`length` positions in each row (`reserve_prompt_positions`: placeholders after the first token,
the row's end cut by as much), and the embedding layer's output at those positions is replaced
by the prompt vectors. Parameters: {embedding path: [length, width]}.

Both train with the classification head while the base model stays frozen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models.transformer import Attention, TextEmbedding

PyTree = Any


@dataclasses.dataclass(frozen=True)
class PrefixConfig:
  length: int = 10
  init_std: float = 0.02


@dataclasses.dataclass(frozen=True)
class PromptConfig:
  length: int = 10
  init_std: float = 0.02
  start: int = 1  # first reserved position (after [CLS])


def _trace(model: nn.Module, variables: PyTree, record, *args, **kwargs) -> None:
  def run(variables):
    with nn.intercept_methods(record):
      return model.apply(variables, *args, **kwargs)

  jax.eval_shape(run, variables)


def attention_layers(
  model: nn.Module, variables: PyTree, *args, **kwargs
) -> dict[str, tuple[int, int]]:
  """{path: (heads, head_dim)} of every self-attention layer the model calls."""
  found: dict[str, tuple[int, int]] = {}

  def record(next_fun, call_args, call_kwargs, context):
    module = context.module
    if (
      isinstance(module, Attention)
      and context.method_name == "__call__"
      and call_kwargs.get("context") is None
    ):
      width = call_args[0].shape[-1]
      found["/".join(module.path)] = (module.num_heads, width // module.num_heads)
    return next_fun(*call_args, **call_kwargs)

  _trace(model, variables, record, *args, **kwargs)
  return found


def init_prefixes(
  key: jax.Array, layers: dict[str, tuple[int, int]], config: PrefixConfig
) -> PyTree:
  if not layers:
    raise ValueError(
      "Prefix tuning needs self-attention layers (ssl_jax.models.transformer."
      "Attention); this model calls none."
    )
  prefixes = {}
  for (path, (heads, head_dim)), layer_key in zip(
    sorted(layers.items()), jax.random.split(key, len(layers))
  ):
    k_key, v_key = jax.random.split(layer_key)
    shape = (config.length, heads, head_dim)
    prefixes[path] = {
      "key": config.init_std * jax.random.normal(k_key, shape),
      "value": config.init_std * jax.random.normal(v_key, shape),
    }
  return prefixes


def apply_prefixes(
  model: nn.Module,
  variables: PyTree,
  prefixes: PyTree,
  *args,
  method: str | Callable | None = None,
  **kwargs,
) -> Any:
  """`model.apply(variables, *args, **kwargs)` with the learned prefixes in every adapted
  self-attention layer."""
  active: list[tuple[str, ...]] = []  # the adapted attention layer being called, if any

  def adapt(next_fun, call_args, call_kwargs, context):
    module = context.module
    path = "/".join(module.path)
    if context.method_name != "__call__":
      return next_fun(*call_args, **call_kwargs)
    if isinstance(module, Attention) and path in prefixes:
      call_args = list(call_args)
      x, mask = call_args[0], call_args[1]
      if len(call_args) > 3 and call_args[3] or call_kwargs.get("decode"):
        raise ValueError("Prefix tuning does not support cached decoding.")
      if call_kwargs.get("context") is not None:
        return next_fun(*call_args, **call_kwargs)  # cross-attention: unchanged
      length = prefixes[path]["key"].shape[0]
      if mask is not None:
        mask = jnp.broadcast_to(mask, mask.shape[:2] + (x.shape[1], mask.shape[-1]))
        open_columns = jnp.ones(mask.shape[:-1] + (length,), bool)
        call_args[1] = jnp.concatenate([open_columns, mask], axis=-1)
      active.append(module.path)
      try:
        return next_fun(*call_args, **call_kwargs)
      finally:
        active.pop()
    if active and module.name in ("key", "value") and module.path[:-1] == active[-1]:
      y = next_fun(*call_args, **call_kwargs)  # [batch, length, heads, head_dim]
      prefix = prefixes["/".join(active[-1])][module.name].astype(y.dtype)
      return jnp.concatenate([jnp.broadcast_to(prefix, (y.shape[0],) + prefix.shape), y], 1)
    return next_fun(*call_args, **call_kwargs)

  with nn.intercept_methods(adapt):
    return model.apply(variables, *args, method=method, **kwargs)


def embedding_layers(model: nn.Module, variables: PyTree, *args, **kwargs) -> dict[str, int]:
  """{path: width} of every token embedding (`TextEmbedding`) the model calls."""
  found: dict[str, int] = {}

  def record(next_fun, call_args, call_kwargs, context):
    y = next_fun(*call_args, **call_kwargs)
    if isinstance(context.module, TextEmbedding) and context.method_name == "__call__":
      found["/".join(context.module.path)] = y.shape[-1]
    return y

  _trace(model, variables, record, *args, **kwargs)
  return found


def init_prompts(key: jax.Array, layers: dict[str, int], config: PromptConfig) -> PyTree:
  if not layers:
    raise ValueError(
      "Prompt tuning needs a token embedding (ssl_jax.models.transformer."
      "TextEmbedding); this model calls none."
    )
  return {
    path: config.init_std * jax.random.normal(jax.random.fold_in(key, i), (config.length, width))
    for i, (path, width) in enumerate(sorted(layers.items()))
  }


def reserve_prompt_positions(
  tokens: jnp.ndarray, length: int, placeholder: int, start: int = 1
) -> jnp.ndarray:
  """[B, L] tokens with `length` placeholder tokens inserted at `start` and the last `length`
  tokens dropped (the shape stays [B, L]); the placeholders must not be padding, so the
  prompt positions are attended to."""
  if start + length >= tokens.shape[1]:
    raise ValueError(
      f"A prompt of {length} tokens at position {start} leaves no room in rows "
      f"of {tokens.shape[1]} tokens."
    )
  fill = jnp.full((tokens.shape[0], length), placeholder, tokens.dtype)
  return jnp.concatenate([tokens[:, :start], fill, tokens[:, start : tokens.shape[1] - length]], 1)


def apply_prompts(
  model: nn.Module,
  variables: PyTree,
  prompts: PyTree,
  *args,
  start: int = 1,
  method: str | Callable | None = None,
  **kwargs,
) -> Any:
  """`model.apply(variables, *args, **kwargs)` with the embeddings at positions
  [start, start + length) replaced by the learned prompts."""

  def adapt(next_fun, call_args, call_kwargs, context):
    y = next_fun(*call_args, **call_kwargs)
    path = "/".join(context.module.path)
    if context.method_name != "__call__" or path not in prompts:
      return y
    prompt = prompts[path].astype(y.dtype)
    return jax.lax.dynamic_update_slice(
      y, jnp.broadcast_to(prompt, (y.shape[0],) + prompt.shape), (0, start, 0)
    )

  with nn.intercept_methods(adapt):
    return model.apply(variables, *args, method=method, **kwargs)

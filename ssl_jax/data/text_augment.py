"""Text "label augmentation" on device: token deletion, random substitution, span shuffling.

Every op maps a batch of packed rows {"tokens", "segment_ids", "positions"} [B, L] to a batch
of the same static shape, touches only regular tokens (specials and padding stay), keeps every
token inside its own document, and depends only on the key. Tasks apply it to their input rows
before their objective (`config.augment` of a text task: see `TextAugmentConfig`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ssl_jax.registry import check_options

Batch = dict[str, jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class TextAugmentConfig:
  """Options of the text augmentation (`config.augment` of a text task); 0 turns an op off.

  Attributes:
    deletion_rate: probability of deleting each regular token (the rest close up).
    substitution_rate: probability of replacing each regular token by a random regular one.
    span_shuffle_length: shuffle the order of this many-token spans inside each document
      (its first and last special tokens stay in place); 0 = off.
  """

  deletion_rate: float = 0.0
  substitution_rate: float = 0.0
  span_shuffle_length: int = 0

  @property
  def active(self) -> bool:
    return bool(self.deletion_rate or self.substitution_rate or self.span_shuffle_length)


def text_augment_config(options: Mapping[str, Any]) -> TextAugmentConfig:
  """`config.augment` -> TextAugmentConfig; unknown keys raise a ConfigError naming the valid."""
  options = dict(options)
  check_options("config.augment", options, TextAugmentConfig.__dataclass_fields__)
  return TextAugmentConfig(**options)


def positions_from_segments(segment_ids: jnp.ndarray) -> jnp.ndarray:
  """Index of each token within its (contiguous) segment; 0 on padding."""
  length = segment_ids.shape[1]
  index = jnp.arange(length)[None]
  starts = jnp.concatenate(
    [jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1
  )
  first = jax.lax.cummax(jnp.where(starts, index, 0), axis=1)
  return jnp.where(segment_ids > 0, index - first, 0).astype(jnp.int32)


def _regular(tokens: jnp.ndarray, special_ids: Sequence[int]) -> jnp.ndarray:
  return ~jnp.isin(tokens, jnp.asarray(special_ids))


def substitute(
  key: jax.Array, batch: Batch, rate: float, special_ids: Sequence[int], vocab_size: int
) -> Batch:
  """Each regular token becomes a random regular token with probability `rate`."""
  tokens = batch["tokens"]
  pick_key, token_key = jax.random.split(key)
  replace = _regular(tokens, special_ids) & jax.random.bernoulli(pick_key, rate, tokens.shape)
  random_tokens = jax.random.randint(token_key, tokens.shape, max(special_ids) + 1, vocab_size)
  return {**batch, "tokens": jnp.where(replace, random_tokens, tokens)}


def delete(
  key: jax.Array, batch: Batch, rate: float, special_ids: Sequence[int], pad_id: int
) -> Batch:
  """Deletes each regular token with probability `rate`; the survivors close up in order (with
  their segment ids), positions are recomputed, and the freed tail becomes padding."""
  tokens, segments = batch["tokens"], batch["segment_ids"]
  drop = _regular(tokens, special_ids) & jax.random.bernoulli(key, rate, tokens.shape)
  # A stable sort on "dropped" moves the kept tokens to the front in their original order.
  order = jnp.argsort(drop, axis=1, stable=True)
  kept = (~drop).sum(1, keepdims=True)
  valid = jnp.arange(tokens.shape[1])[None] < kept
  tokens = jnp.where(valid, jnp.take_along_axis(tokens, order, 1), pad_id)
  segments = jnp.where(valid, jnp.take_along_axis(segments, order, 1), 0)
  return {
    **batch,
    "tokens": tokens,
    "segment_ids": segments,
    "positions": positions_from_segments(segments),
  }


def shuffle_spans(
  key: jax.Array, batch: Batch, span_length: int, special_ids: Sequence[int]
) -> Batch:
  """Within each document, permutes its spans of `span_length` tokens (counted from the
  document start); special tokens at either end of a document stay where they are."""
  tokens, segments, positions = batch["tokens"], batch["segment_ids"], batch["positions"]
  length = tokens.shape[1]
  index = jnp.arange(length)[None]
  span_start = jax.lax.cummax(jnp.where(positions % span_length == 0, index, 0), axis=1)
  span_key = jnp.take_along_axis(jax.random.uniform(key, tokens.shape), span_start, axis=1)
  regular = _regular(tokens, special_ids)
  # Sort key: document first (padding last); inside it a special token that opens the document
  # stays first, regular spans come in random order, other specials ([SEP]) stay last.
  rank = jnp.where(regular, 1.0 + span_key, jnp.where(positions == 0, 0.0, 2.5))
  document = jnp.where(segments > 0, segments, length + 1).astype(jnp.float32)
  # Keep the original order inside a span (and among pinned specials) with a tiny tie-break.
  sort_key = document * 4.0 + rank + index / (4.0 * length * (length + 2))
  order = jnp.argsort(sort_key, axis=1)
  return {**batch, "tokens": jnp.take_along_axis(tokens, order, 1)}


def augment_text(
  key: jax.Array,
  batch: Batch,
  cfg: TextAugmentConfig,
  special_ids: Sequence[int],
  vocab_size: int,
  pad_id: int,
) -> Batch:
  """Applies the configured ops in the order deletion, substitution, span shuffle."""
  if not cfg.active:
    return batch
  if "segment_ids" not in batch:  # One document per row.
    valid = batch["tokens"] != pad_id
    batch = {
      **batch,
      "segment_ids": valid.astype(jnp.int32),
      "positions": positions_from_segments(valid.astype(jnp.int32)),
    }
  delete_key, substitute_key, shuffle_key = jax.random.split(key, 3)
  if cfg.deletion_rate:
    batch = delete(delete_key, batch, cfg.deletion_rate, special_ids, pad_id)
  if cfg.substitution_rate:
    batch = substitute(substitute_key, batch, cfg.substitution_rate, special_ids, vocab_size)
  if cfg.span_shuffle_length:
    batch = shuffle_spans(shuffle_key, batch, cfg.span_shuffle_length, special_ids)
  return batch


class TextAugmenter:
  """A text task's augmentation: built from `config.augment` and the dataset's token facts;
  calling it on (rng, batch) returns the augmented batch (the batch itself when nothing is on).
  The key is folded off the step key, so turning augmentation on leaves every other draw of
  the step unchanged."""

  def __init__(self, options: Mapping[str, Any], info: Mapping[str, Any]):
    self.cfg = text_augment_config(options)
    self.special_ids = tuple(info["special_ids"])
    # Substitutes are drawn from pieces text can produce, never from T5 sentinels.
    self.vocab_size = info.get("text_vocab_size", info["vocab_size"])
    self.pad_id = info["pad_id"]

  def __call__(self, rng: jax.Array, batch: Batch) -> Batch:
    if not self.cfg.active:
      return batch
    return augment_text(
      jax.random.fold_in(rng, 0x7E47),
      batch,
      self.cfg,
      self.special_ids,
      self.vocab_size,
      self.pad_id,
    )

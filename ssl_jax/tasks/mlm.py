"""BERT masked language modelling with dynamic masking and a vocabulary projection only where
the loss is taken (the masked positions)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data.source import Dataset
from ssl_jax.data.text_augment import TextAugmenter
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import Task, build_model, mean_over_valid, split_variables


def default_max_predictions(seq_len: int, rate: float) -> int:
  """Per-row prediction budget: the mean masked count plus 4 standard deviations.

  Rows that draw more masked tokens than this (probability ~3e-5) keep a random subset of them
  masked; the rest stay untouched inputs, so every corrupted token is still predicted.
  """
  mean = seq_len * rate
  return min(seq_len, math.ceil(mean + 4 * math.sqrt(mean * (1 - rate))) + 1)


MASKINGS = ("dynamic", "exact", "whole_word")


def word_ids(tokens: jnp.ndarray, word_start: jnp.ndarray) -> jnp.ndarray:
  """[B, L] index of the first token of each token's word (a word starts at a piece that
  `word_start` marks: sentencepiece's "▁" prefix, or a special token)."""
  starts = word_start[tokens] | (jnp.arange(tokens.shape[1]) == 0)[None]
  return jax.lax.cummax(jnp.where(starts, jnp.arange(tokens.shape[1])[None], 0), axis=1)


def bert_mask(
  rng: jax.Array,
  tokens: jnp.ndarray,
  *,
  special_ids: Sequence[int],
  mask_id: int,
  vocab_size: int,
  rate: float = 0.15,
  mask_prob: float = 0.8,
  random_prob: float = 0.1,
  max_predictions: int,
  masking: str = "dynamic",
  word_start: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """BERT's masking of a batch of rows [B, L].

  Which tokens are chosen depends on `masking`:
    dynamic     each non-special token independently with probability `rate` (RoBERTa);
    exact       exactly round(rate * n) of the row's n non-special tokens (at least 1), as
                google-research/bert's create_pretraining_data;
    whole_word  each word with probability `rate`, all of its pieces together (needs
                `word_start`, a [vocab] bool table of pieces that begin a word).
  A chosen token becomes [MASK] with probability `mask_prob`, a random regular token with
  `random_prob`, else stays unchanged.

  Returns:
    inputs: corrupted tokens [B, L].
    positions: [B, K] indices of the chosen tokens (K = max_predictions).
    targets: [B, K] original tokens at those positions.
    weights: [B, K] 1.0 for a real prediction, 0.0 for unused budget slots.
  """
  if masking not in MASKINGS:
    raise ValueError(f"Unknown masking {masking!r}; valid: {list(MASKINGS)}.")
  choose_key, order_key, kind_key, random_key = jax.random.split(rng, 4)
  candidate = ~jnp.isin(tokens, jnp.asarray(special_ids))
  draw = jax.random.uniform(choose_key, tokens.shape)
  order = jax.random.uniform(order_key, tokens.shape)
  if masking == "whole_word":
    if word_start is None:
      raise ValueError("masking='whole_word' needs the tokenizer's word_start table.")
    first = word_ids(tokens, word_start)
    # Every piece of a word shares its first piece's draws: chosen and ordered together.
    draw = jnp.take_along_axis(draw, first, axis=1)
    order = (
      jnp.take_along_axis(order, first, axis=1)
      + 1e-3 * (jnp.arange(tokens.shape[1]) - first) / tokens.shape[1]
    )
  chosen = candidate & (draw < rate)
  if masking == "exact":
    # The row's candidates ranked by a random draw; the first round(rate * n) are chosen.
    count = jnp.maximum(jnp.round(rate * candidate.sum(1, keepdims=True)), 1)
    rank = jnp.argsort(jnp.argsort(jnp.where(candidate, draw, 2.0), axis=1), axis=1)
    chosen = candidate & (rank < count)
  # A random order among chosen tokens; unchosen ones sort last and get weight 0.
  score = jnp.where(chosen, order, -1.0)
  if masking == "whole_word" and max_predictions < tokens.shape[1]:
    # One slot past the budget tells whether the cut splits a word; if so, drop that word.
    top_scores, positions = jax.lax.top_k(score, max_predictions + 1)
    slot_word = jnp.take_along_axis(first, positions, axis=1)
    split = (top_scores[:, -1] >= 0) & (slot_word[:, -1] == slot_word[:, -2])
    top_scores = jnp.where(split[:, None] & (slot_word == slot_word[:, -2:-1]), -1.0, top_scores)[
      :, :-1
    ]
    positions = positions[:, :-1]
  else:
    top_scores, positions = jax.lax.top_k(score, max_predictions)
  weights = (top_scores >= 0).astype(jnp.float32)
  targets = jnp.take_along_axis(tokens, positions, axis=1)
  kind = jax.random.uniform(kind_key, positions.shape)
  # Special tokens occupy the lowest ids; random replacements are drawn from the regular ones.
  first_regular = max(special_ids) + 1
  random_tokens = jax.random.randint(random_key, positions.shape, first_regular, vocab_size)
  replacement = jnp.where(
    kind < mask_prob, mask_id, jnp.where(kind < mask_prob + random_prob, random_tokens, targets)
  )
  replacement = jnp.where(weights > 0, replacement, targets)
  rows = jnp.arange(tokens.shape[0])[:, None]
  inputs = tokens.at[rows, positions].set(replacement)
  return inputs, positions, targets, weights


class MaskedLMHead(nn.Module):
  """BERT's prediction head: dense to the embedding width, GELU, LayerNorm, then the tied
  embedding projection (`attend`) plus an output bias. Logits are float32."""

  embedding_width: int
  gelu_approximate: bool = True
  norm_epsilon: float = 1e-6

  @nn.compact
  def __call__(self, hidden: jnp.ndarray, attend) -> jnp.ndarray:
    hidden = nn.Dense(self.embedding_width, name="dense")(hidden)
    hidden = nn.LayerNorm(epsilon=self.norm_epsilon, name="norm")(
      nn.gelu(hidden, approximate=self.gelu_approximate)
    )
    logits = attend(hidden).astype(jnp.float32)
    return logits + self.param("output_bias", nn.initializers.zeros, (logits.shape[-1],))


def masked_lm_head(encoder: nn.Module, name: str = "head") -> MaskedLMHead:
  """The head that matches `encoder` (its embedding width, GELU and LayerNorm epsilon)."""
  return MaskedLMHead(
    encoder.embedding_width, encoder.gelu_approximate, encoder.norm_epsilon, name=name
  )


class MaskedLMModel(nn.Module):
  """Encoder + BERT's prediction head, evaluated only at the masked positions."""

  encoder: nn.Module

  def setup(self):
    self.head = masked_lm_head(self.encoder)

  def __call__(
    self,
    tokens: jnp.ndarray,
    valid: jnp.ndarray,
    positions: jnp.ndarray,
    train: bool = True,
    segment_ids: jnp.ndarray | None = None,
    token_positions: jnp.ndarray | None = None,
  ) -> jnp.ndarray:
    """Logits [B, K, V] at the K masked `positions` of each row only."""
    hidden = self.encoder(
      tokens, valid, train=train, segment_ids=segment_ids, positions=token_positions
    )
    hidden = jnp.take_along_axis(hidden, positions[..., None], axis=1)
    return self.head(hidden, self.encoder.attend)

  def represent(
    self,
    tokens: jnp.ndarray,
    valid: jnp.ndarray,
    segment_ids: jnp.ndarray | None = None,
    token_positions: jnp.ndarray | None = None,
  ) -> jnp.ndarray:
    hidden = self.encoder(
      tokens, valid, train=False, segment_ids=segment_ids, positions=token_positions
    )
    return mean_over_valid(hidden, valid)


@TASKS.register("mlm")
class MaskedLM(Task):
  """BERT-style masked language modelling on token rows (`batch["tokens"]`).

  Options (`config.task_kwargs`): mask_rate, mask_prob, random_prob, max_predictions (0 picks
  `default_max_predictions`), masking ("dynamic", "exact" or "whole_word"; see `bert_mask`).
  `config.augment` may turn on text augmentation of the input rows (`TextAugmentConfig`).
  """

  modality = "text"

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    mask_rate: float = 0.15,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    max_predictions: int = 0,
    masking: str = "dynamic",
  ):
    super().__init__(config, dataset)
    info = dataset.info
    seq_len = dataset.split(dataset.train_split)["tokens"].shape[1]
    self.model = MaskedLMModel(
      build_model(config, vocab_size=info["vocab_size"], max_length=seq_len)
    )
    self.pad_id = info["pad_id"]
    if masking not in MASKINGS:
      raise ConfigError(f"Unknown config.task_kwargs.masking {masking!r}; valid: {list(MASKINGS)}.")
    if masking == "whole_word" and "word_start" not in info:
      raise ConfigError(
        f"masking='whole_word' needs word boundaries from a sentencepiece "
        f"tokenizer; dataset {config.data.name!r} has none."
      )
    word_start = jnp.asarray(info["word_start"]) if masking == "whole_word" else None
    self.augment = TextAugmenter(config.get("augment", {}), info)
    self.mask_options = dict(
      masking=masking,
      word_start=word_start,
      special_ids=tuple(info["special_ids"]),
      mask_id=info["mask_id"],
      vocab_size=info.get("text_vocab_size", info["vocab_size"]),
      rate=mask_rate,
      mask_prob=mask_prob,
      random_prob=random_prob,
      max_predictions=max_predictions or default_max_predictions(seq_len, mask_rate),
    )

  def init(self, rng, batch):
    tokens = batch["tokens"]
    positions = jnp.zeros((tokens.shape[0], self.mask_options["max_predictions"]), jnp.int32)
    return split_variables(
      self.model.init(rng, tokens, tokens != self.pad_id, positions, train=False)
    )

  def masked_predictions(self, params, model_state, batch, rng, train: bool):
    """Masks the batch and returns (logits [B, K, V], targets [B, K], weights [B, K])."""
    mask_key, dropout_key = jax.random.split(rng)
    tokens = batch["tokens"]
    inputs, positions, targets, weights = bert_mask(mask_key, tokens, **self.mask_options)
    logits = self.model.apply(
      {"params": params, **model_state},
      inputs,
      tokens != self.pad_id,
      positions,
      train=train,
      rngs={"dropout": dropout_key},
      **packing_inputs(batch),
    )
    return logits, targets, weights

  def loss_fn(self, params, model_state, batch, rng):
    batch = self.augment(rng, batch)
    logits, targets, weights = self.masked_predictions(params, model_state, batch, rng, True)
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    count = jnp.maximum(weights.sum(), 1.0)
    loss = (losses * weights).sum() / count
    accuracy = ((logits.argmax(-1) == targets) * weights).sum() / count
    return loss, ({"masked_accuracy": accuracy}, model_state)

  def represent(self, params, model_state, batch):
    tokens = batch["tokens"]
    return self.model.apply(
      {"params": params, **model_state},
      tokens,
      tokens != self.pad_id,
      method=MaskedLMModel.represent,
      **packing_inputs(batch),
    )


def packing_inputs(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The packed-row layout of a text batch, when it has one (segment ids and positions)."""
  return {
    name: batch[key]
    for name, key in (("segment_ids", "segment_ids"), ("token_positions", "positions"))
    if key in batch
  }

"""BERT masked language modelling with dynamic masking and a vocabulary projection only where
the loss is taken (the masked positions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.capabilities import EncoderView, MaskedTokenPredictor
from ssl_jax.data.source import Dataset
from ssl_jax.losses import weighted_accuracy, weighted_cross_entropy
from ssl_jax.models.hf_bert import bert_from_hf
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.runs.model_source import Architecture, register_architecture
from ssl_jax.tasks.base import mean_over_valid, split_variables, without_key
from ssl_jax.tasks.text import TextTask, packing_inputs


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
    raise ConfigError(f"Unknown masking {masking!r}; valid: {list(MASKINGS)}.")
  choose_key, order_key, kind_key, random_key = jax.random.split(rng, 4)
  candidate = ~jnp.isin(tokens, jnp.asarray(special_ids))
  draw = jax.random.uniform(choose_key, tokens.shape)
  order = jax.random.uniform(order_key, tokens.shape)
  if masking == "whole_word":
    if word_start is None:
      raise ConfigError("masking='whole_word' needs the tokenizer's word_start table.")
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
    masked_positions: jnp.ndarray,
    train: bool = True,
    segment_ids: jnp.ndarray | None = None,
    positions: jnp.ndarray | None = None,
    token_types: jnp.ndarray | None = None,
  ) -> jnp.ndarray:
    """Logits [B, K, V] at the K `masked_positions` of each row only (`segment_ids`,
    `positions` and `token_types` describe the rows, as `TransformerEncoder` takes them)."""
    hidden = self.encoder(
      tokens,
      valid,
      train=train,
      segment_ids=segment_ids,
      positions=positions,
      token_types=token_types,
    )
    hidden = jnp.take_along_axis(hidden, masked_positions[..., None], axis=1)
    return self.head(hidden, self.encoder.attend)


def bert_mask_options(
  task: TextTask,
  *,
  masking: str,
  rate: float,
  mask_prob: float,
  random_prob: float,
  max_predictions: int,
) -> dict[str, Any]:
  """Keyword arguments of `bert_mask` for a text task's vocabulary and rows; `max_predictions`
  0 picks `default_max_predictions` for the row length."""
  info = task.info
  return dict(
    masking=masking,
    word_start=jnp.asarray(info["word_start"]) if masking == "whole_word" else None,
    special_ids=tuple(info["special_ids"]),
    mask_id=info["mask_id"],
    vocab_size=info.get("text_vocab_size", info["vocab_size"]),
    rate=rate,
    mask_prob=mask_prob,
    random_prob=random_prob,
    max_predictions=max_predictions or default_max_predictions(task.seq_len, rate),
  )


# A model directory of BertForMaskedLM is a run of this task (`init_from` everywhere).
register_architecture("BertForMaskedLM", Architecture("mlm", "transformer_encoder", bert_from_hf))


@TASKS.register("mlm")
class MaskedLM(TextTask, EncoderView, MaskedTokenPredictor):
  """BERT-style masked language modelling on token rows (`batch["tokens"]`).

  Options (`config.task_kwargs`): mask_rate, mask_prob, random_prob, max_predictions (0 picks
  `default_max_predictions`), masking ("dynamic", "exact" or "whole_word"; see `bert_mask`).
  `config.augment` may turn on text augmentation of the input rows (`TextAugmentConfig`).
  """

  token_roles = ("mask",)

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
    if masking not in MASKINGS:
      raise ConfigError(f"Unknown config.task_kwargs.masking {masking!r}; valid: {list(MASKINGS)}.")
    if masking == "whole_word" and "word_start" not in self.info:
      raise ConfigError(
        f"masking='whole_word' needs word boundaries from a sentencepiece "
        f"tokenizer; dataset {config.data.name!r} has none."
      )
    self.encoder = self.build_text_model()
    self.model = MaskedLMModel(self.encoder)
    self.mask_options = bert_mask_options(
      self,
      masking=masking,
      rate=mask_rate,
      mask_prob=mask_prob,
      random_prob=random_prob,
      max_predictions=max_predictions,
    )

  def init(self, rng, batch):
    tokens = batch["tokens"]
    positions = jnp.zeros((tokens.shape[0], self.mask_options["max_predictions"]), jnp.int32)
    return split_variables(self.model.init(rng, tokens, self.valid(tokens), positions, train=False))

  def masked_predictions(self, params, model_state, batch, rng, train: bool):
    mask_key, dropout_key = jax.random.split(rng)
    tokens = batch["tokens"]
    inputs, positions, targets, weights = bert_mask(mask_key, tokens, **self.mask_options)
    logits = self.model.apply(
      {"params": params, **model_state},
      inputs,
      self.valid(tokens),
      positions,
      train=train,
      rngs={"dropout": dropout_key},
      **packing_inputs(batch),
    )
    return logits, targets, weights

  def masked_lm_log_probs(self, params, model_state, tokens, positions):
    logits = self.model.apply(
      {"params": params, **model_state}, tokens, self.valid(tokens), positions[:, None], train=False
    )[:, 0]
    return jax.nn.log_softmax(logits.astype(jnp.float32))

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    batch = self.augment(rng, batch)
    logits, targets, weights = self.masked_predictions(params, model_state, batch, rng, True)
    loss = weighted_cross_entropy(logits, targets, weights)
    accuracy = weighted_accuracy(logits, targets, weights)
    return loss, ({"masked_accuracy": accuracy}, model_state)

  # --- The encoder ------------------------------------------------------------------------------

  def encoder_module(self):
    return self.encoder

  def encoder_variables(self, params, model_state):
    return self.split_encoder(params, model_state)[0]

  def split_encoder(self, params, model_state):
    return {"params": params["encoder"]}, (without_key(params, "encoder"), model_state)

  def merge_encoder(self, encoder_variables, rest):
    params, model_state = rest
    return {**params, "encoder": encoder_variables["params"]}, model_state

  def represent(self, params, model_state, batch):
    tokens = batch["tokens"]
    hidden = self.encoder.apply(
      self.encoder_variables(params, model_state),
      tokens,
      self.valid(tokens),
      train=False,
      **packing_inputs(batch),
    )
    return mean_over_valid(hidden, self.valid(tokens))

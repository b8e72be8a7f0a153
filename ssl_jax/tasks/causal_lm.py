"""GPT-style causal language modelling: next-token cross entropy over packed rows.

A position predicts the token after it only when both are real tokens of the same document,
so padding and the jump from one packed document to the next are never trained on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data.source import Dataset
from ssl_jax.data.text_augment import TextAugmenter
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import Task, build_model, mean_over_valid, split_variables


def next_token_targets(
  tokens: jnp.ndarray, valid: jnp.ndarray, segment_ids: jnp.ndarray | None = None
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(targets [B, L-1], weights [B, L-1]): the token after each position, and 1.0 where it is
  a real token of the same document as the position."""
  targets = tokens[:, 1:]
  weights = valid[:, 1:] & valid[:, :-1]
  if segment_ids is not None:
    weights = weights & (segment_ids[:, 1:] == segment_ids[:, :-1])
  return targets, weights.astype(jnp.float32)


@TASKS.register("causal_lm")
class CausalLM(Task):
  """Next-token prediction with a `transformer_decoder` on `batch["tokens"]` (packed rows with
  `segment_ids`/`positions` when the source provides them)."""

  modality = "text"

  def __init__(self, config: ml_collections.ConfigDict, dataset: Dataset):
    super().__init__(config, dataset)
    info = dataset.info
    seq_len = dataset.split(dataset.train_split)["tokens"].shape[1]
    self.model = build_model(config, vocab_size=info["vocab_size"], max_length=seq_len)
    if not getattr(self.model, "causal", False):
      raise ConfigError(
        f"Task 'causal_lm' needs a causal model; config.model={config.model!r} "
        "attends both ways. Use 'transformer_decoder'."
      )
    self.pad_id = info["pad_id"]
    self.augment = TextAugmenter(config.get("augment", {}), info)

  def init(self, rng, batch):
    tokens = batch["tokens"]
    return split_variables(self.model.init(rng, tokens, tokens != self.pad_id, train=False))

  def next_token_predictions(self, params, model_state, batch, rng, train: bool):
    """(logits [B, L-1, V], targets [B, L-1], weights [B, L-1])."""
    tokens = batch["tokens"]
    valid = tokens != self.pad_id
    hidden = self.model.apply(
      {"params": params, **model_state},
      tokens,
      valid,
      train=train,
      rngs={"dropout": rng},
      **_decoder_inputs(batch),
    )
    logits = self.model.apply(
      {"params": params}, hidden[:, :-1], method=lambda m, h: m.attend(h)
    ).astype(jnp.float32)
    targets, weights = next_token_targets(tokens, valid, batch.get("segment_ids"))
    return logits, targets, weights

  def loss_fn(self, params, model_state, batch, rng):
    batch = self.augment(rng, batch)  # `config.augment`: deletion / substitution / span shuffle
    logits, targets, weights = self.next_token_predictions(params, model_state, batch, rng, True)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    count = jnp.maximum(weights.sum(), 1.0)
    loss = (nll * weights).sum() / count
    accuracy = ((logits.argmax(-1) == targets) * weights).sum() / count
    return loss, ({"next_token_accuracy": accuracy, "perplexity": jnp.exp(loss)}, model_state)

  def represent(self, params, model_state, batch):
    tokens = batch["tokens"]
    valid = tokens != self.pad_id
    hidden = self.model.apply(
      {"params": params, **model_state}, tokens, valid, train=False, **_decoder_inputs(batch)
    )
    return mean_over_valid(hidden, valid)


def _decoder_inputs(batch):
  """The packed-row layout (segment ids and per-document positions) when the batch has it."""
  return {key: batch[key] for key in ("segment_ids", "positions") if key in batch}

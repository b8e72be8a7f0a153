"""GPT-style causal language modelling: next-token cross entropy over packed rows.

A position predicts the token after it only when both are real tokens of the same document,
so padding and the jump from one packed document to the next are never trained on.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from ssl_jax.capabilities import EncoderView, NextTokenPredictor
from ssl_jax.data.source import Dataset
from ssl_jax.losses import weighted_accuracy, weighted_cross_entropy
from ssl_jax.models.hf_llama import llama_from_hf
from ssl_jax.models.huggingface import gpt2_from_hf
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.runs.model_source import Architecture, register_architecture
from ssl_jax.tasks.base import mean_over_valid, split_variables, without_key
from ssl_jax.tasks.text import TextTask, packing_inputs


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


# A model directory of GPT2LMHeadModel is a run of this task (`init_from` everywhere).
register_architecture(
  "GPT2LMHeadModel", Architecture("causal_lm", "transformer_decoder", gpt2_from_hf)
)
for _name in ("LlamaForCausalLM", "Qwen2ForCausalLM"):
  register_architecture(_name, Architecture("causal_lm", "llama_decoder", llama_from_hf))


@TASKS.register("causal_lm")
class CausalLM(TextTask, EncoderView, NextTokenPredictor):
  """Next-token prediction with a `transformer_decoder` on `batch["tokens"]` (packed rows with
  `segment_ids`/`positions` when the source provides them). The decoder is its own encoder:
  fine-tuning reads its hidden states, and `attend` (the tied embeddings) scores the
  vocabulary."""

  def __init__(self, config: ml_collections.ConfigDict, dataset: Dataset):
    super().__init__(config, dataset)
    self.model = self.build_text_model()
    if not getattr(self.model, "causal", False):
      raise ConfigError(
        f"Task 'causal_lm' needs a causal model; config.model={config.model!r} "
        "attends both ways. Use 'transformer_decoder'."
      )

  def init(self, rng, batch):
    tokens = batch["tokens"]
    return split_variables(self.model.init(rng, tokens, self.valid(tokens), train=False))

  def next_token_predictions(self, params, model_state, batch, rng, train: bool):
    tokens = batch["tokens"]
    valid = self.valid(tokens)
    hidden = self.model.apply(
      {"params": params, **model_state},
      tokens,
      valid,
      train=train,
      rngs={"dropout": rng},
      **packing_inputs(batch),
    )
    # The vocabulary is projected only where a next token is predicted.
    logits = self.model.apply(
      {"params": params}, hidden[:, :-1], method=lambda m, h: m.attend(h)
    ).astype(jnp.float32)
    targets, weights = next_token_targets(tokens, valid, batch.get("segment_ids"))
    return logits, targets, weights

  def sampling_model(self, params):
    return self.model, params

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    batch = self.augment(rng, batch)  # `config.augment`: deletion / substitution / span shuffle
    logits, targets, weights = self.next_token_predictions(params, model_state, batch, rng, True)
    loss = weighted_cross_entropy(logits, targets, weights)
    accuracy = weighted_accuracy(logits, targets, weights)
    return loss, ({"next_token_accuracy": accuracy, "perplexity": jnp.exp(loss)}, model_state)

  # --- The encoder ------------------------------------------------------------------------------

  def encoder_module(self):
    return self.model

  def encoder_variables(self, params, model_state):
    return {"params": params, **model_state}

  def split_encoder(self, params, model_state):
    return self.encoder_variables(params, model_state), ({}, {})

  def merge_encoder(self, encoder_variables, rest):
    del rest  # the decoder is all there is
    return encoder_variables["params"], without_key(encoder_variables, "params")

  def represent(self, params, model_state, batch):
    tokens = batch["tokens"]
    valid = self.valid(tokens)
    hidden = self.model.apply(
      {"params": params, **model_state}, tokens, valid, train=False, **packing_inputs(batch)
    )
    return mean_over_valid(hidden, valid)

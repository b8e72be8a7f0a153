"""ELECTRA replaced-token detection (Clark et al. 2020).

A small generator (a quarter of the discriminator's width, same depth) is trained with MLM on
rows where 15% of the tokens are chosen, 85% of those shown as [MASK] and 15% unchanged. Its
samples replace every chosen token, and the discriminator labels each real token of the result
as original or replaced. A sample equal to the original token is labelled original, as in the
paper. Generator and discriminator share the token and position embeddings (at the
discriminator's width; the generator projects in and out). Loss = generator MLM + 50 x
discriminator binary cross entropy. After pretraining the discriminator is the encoder to keep
(`represent`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax.capabilities import EncoderView, ReplacedTokenDetector
from ssl_jax.data.source import Dataset
from ssl_jax.losses import weighted_accuracy, weighted_cross_entropy, weighted_mean
from ssl_jax.models.transformer import TextEmbedding, TransformerEncoder
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import mean_over_valid, split_variables, without_key
from ssl_jax.tasks.mlm import bert_mask, bert_mask_options, masked_lm_head
from ssl_jax.tasks.text import TextTask, packing_inputs


def replaced_token_labels(original: jnp.ndarray, corrupted: jnp.ndarray) -> jnp.ndarray:
  """1.0 where the discriminator's input differs from the original token, else 0.0: a sampled
  token that happens to equal the original is real."""
  return (corrupted != original).astype(jnp.float32)


class ElectraModel(nn.Module):
  """Generator and discriminator encoders over one shared `TextEmbedding`.

  `encoder_fields` are the discriminator's `TransformerEncoder` fields; the generator copies
  them with width, heads and MLP width scaled by `generator_fraction`.
  """

  encoder_fields: Any  # dict of TransformerEncoder fields
  generator_fraction: float = 0.25

  def setup(self):
    fields = dict(self.encoder_fields)
    dims = TransformerEncoder(**fields).dims
    self.embed = TextEmbedding(
      fields["vocab_size"], dims["width"], fields["max_length"], fields.get("dtype", "float32")
    )
    scaled = lambda n: max(1, int(round(n * self.generator_fraction)))
    self.discriminator = TransformerEncoder(**{**fields, **dims}, shared_embed=self.embed)
    self.generator = TransformerEncoder(
      **{
        **fields,
        **dims,
        "width": scaled(dims["width"]),
        "num_heads": scaled(dims["num_heads"]),
        "mlp_dim": scaled(dims["mlp_dim"]),
        "embed_width": dims["width"],
      },
      shared_embed=self.embed,
    )
    self.generator_head = masked_lm_head(self.generator, name="generator_head")
    self.discriminator_dense = nn.Dense(dims["width"])
    self.discriminator_out = nn.Dense(1)

  def generator_logits(
    self, tokens, valid, masked_positions, train: bool, **packing
  ) -> jnp.ndarray:
    """[B, K, V] logits at the `masked_positions` ([B, K]); `packing` describes packed rows."""
    hidden = self.generator(tokens, valid, train=train, **packing)
    hidden = jnp.take_along_axis(hidden, masked_positions[..., None], axis=1)
    return self.generator_head(hidden, self.generator.attend)

  def discriminator_logits(self, tokens, valid, train: bool, **packing) -> jnp.ndarray:
    """[B, L] logits that each token was replaced."""
    hidden = self.discriminator(tokens, valid, train=train, **packing)
    hidden = nn.gelu(self.discriminator_dense(hidden))
    return self.discriminator_out(hidden)[..., 0].astype(jnp.float32)

  def discriminator_features(self, tokens, valid, **packing) -> jnp.ndarray:
    return self.discriminator(tokens, valid, train=False, **packing)

  def __call__(self, tokens, valid, masked_positions, train: bool = True, **packing):
    return (
      self.generator_logits(tokens, valid, masked_positions, train, **packing),
      self.discriminator_logits(tokens, valid, train, **packing),
    )


@TASKS.register("electra")
class Electra(TextTask, EncoderView, ReplacedTokenDetector):
  """ELECTRA on token rows. `config.model` / `model_kwargs` describe the discriminator (a
  `transformer_encoder`), which is the encoder a fine-tune starts from.

  Options (`config.task_kwargs`): generator_fraction (0.25), discriminator_weight (50),
  mask_rate (0.15), mask_prob (0.85: shown as [MASK]; the rest stay unchanged), sampling
  temperature of the generator (1.0), max_predictions (0 picks `default_max_predictions`).
  """

  token_roles = ("mask",)

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    generator_fraction: float = 0.25,
    discriminator_weight: float = 50.0,
    mask_rate: float = 0.15,
    mask_prob: float = 0.85,
    temperature: float = 1.0,
    max_predictions: int = 0,
  ):
    super().__init__(config, dataset)
    discriminator = self.build_text_model()
    if type(discriminator) is not TransformerEncoder:  # noqa: E721  (subclasses are causal)
      raise ConfigError(
        f"Task 'electra' needs config.model='transformer_encoder' for its "
        f"discriminator; got {config.model!r}."
      )
    if not 0 < generator_fraction <= 1:
      raise ConfigError(
        f"config.task_kwargs.generator_fraction={generator_fraction} must be in (0, 1]."
      )
    fields = {
      f.name: getattr(discriminator, f.name)
      for f in dataclasses.fields(discriminator)
      if f.init and f.name not in ("parent", "name", "shared_embed")
    }
    self.model = ElectraModel(fields, generator_fraction)
    # The discriminator on its own, with the shared embeddings as its own (`encoder_variables`).
    self.discriminator = TransformerEncoder(**{**fields, **discriminator.dims})
    self.discriminator_weight = discriminator_weight
    self.temperature = temperature
    self.mask_options = bert_mask_options(
      self,
      masking="dynamic",
      rate=mask_rate,
      mask_prob=mask_prob,
      random_prob=0.0,
      max_predictions=max_predictions,
    )

  def init(self, rng, batch):
    tokens = batch["tokens"]
    positions = jnp.zeros((tokens.shape[0], self.mask_options["max_predictions"]), jnp.int32)
    return split_variables(self.model.init(rng, tokens, self.valid(tokens), positions, train=False))

  def replaced_token_predictions(self, params, model_state, batch, rng, train: bool):
    """Masks, samples replacements and runs both networks. Returns generator logits/targets/
    weights at the masked positions, the corrupted row, the discriminator's logits, its
    replaced-token labels and the weights of real (non-padding) tokens."""
    mask_key, sample_key, generator_key, discriminator_key = jax.random.split(rng, 4)
    tokens = batch["tokens"]
    valid = self.valid(tokens)
    packing = packing_inputs(batch)
    variables = {"params": params, **model_state}
    inputs, positions, targets, weights = bert_mask(mask_key, tokens, **self.mask_options)
    generator_logits = self.model.apply(
      variables,
      inputs,
      valid,
      positions,
      train,
      method=ElectraModel.generator_logits,
      rngs={"dropout": generator_key},
      **packing,
    )
    # Samples are data for the discriminator: no gradient flows back into the generator.
    sampled = jax.random.categorical(
      sample_key, jax.lax.stop_gradient(generator_logits) / self.temperature
    )
    sampled = jnp.where(weights > 0, sampled, targets)
    rows = jnp.arange(tokens.shape[0])[:, None]
    corrupted = tokens.at[rows, positions].set(sampled)
    discriminator_logits = self.model.apply(
      variables,
      corrupted,
      valid,
      train,
      method=ElectraModel.discriminator_logits,
      rngs={"dropout": discriminator_key},
      **packing,
    )
    return {
      "generator_logits": generator_logits,
      "targets": targets,
      "weights": weights,
      "corrupted": corrupted,
      "discriminator_logits": discriminator_logits,
      "labels": replaced_token_labels(tokens, corrupted),
      "token_weights": valid.astype(jnp.float32),
    }

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    augment_key, rng = jax.random.split(rng)
    batch = self.augment(augment_key, batch)
    out = self.replaced_token_predictions(params, model_state, batch, rng, train=True)
    weights, token_weights = out["weights"], out["token_weights"]
    generator_loss = weighted_cross_entropy(out["generator_logits"], out["targets"], weights)
    bce = optax.sigmoid_binary_cross_entropy(out["discriminator_logits"], out["labels"])
    discriminator_loss = weighted_mean(bce, token_weights)
    detected = (out["discriminator_logits"] > 0) == (out["labels"] > 0)
    metrics = {
      "generator_loss": generator_loss,
      "discriminator_loss": discriminator_loss,
      "generator_accuracy": weighted_accuracy(out["generator_logits"], out["targets"], weights),
      "discriminator_accuracy": weighted_mean(detected, token_weights),
      "replaced_fraction": weighted_mean(out["labels"], token_weights),
    }
    loss = generator_loss + self.discriminator_weight * discriminator_loss
    return loss, (metrics, model_state)

  # --- The encoder: the discriminator with the shared embeddings ---------------------------------

  def encoder_module(self):
    return self.discriminator

  def encoder_variables(self, params, model_state):
    return self.split_encoder(params, model_state)[0]

  def split_encoder(self, params, model_state):
    encoder = {"params": {**params["discriminator"], "embed": params["embed"]}}
    rest = {k: v for k, v in params.items() if k not in ("discriminator", "embed")}
    return encoder, (rest, model_state)

  def merge_encoder(self, encoder_variables, rest):
    params, model_state = rest
    encoder = encoder_variables["params"]
    return {
      **params,
      "discriminator": without_key(encoder, "embed"),
      "embed": encoder["embed"],
    }, model_state

  def represent(self, params, model_state, batch):
    tokens = batch["tokens"]
    valid = self.valid(tokens)
    hidden = self.discriminator.apply(
      self.encoder_variables(params, model_state),
      tokens,
      valid,
      train=False,
      **packing_inputs(batch),
    )
    return mean_over_valid(hidden, valid)

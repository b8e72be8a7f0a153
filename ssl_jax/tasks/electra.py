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

from ssl_jax.data.source import Dataset
from ssl_jax.data.text_augment import TextAugmenter
from ssl_jax.models.transformer import TextEmbedding, TransformerEncoder
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import Task, build_model, mean_over_valid, split_variables
from ssl_jax.tasks.mlm import bert_mask, default_max_predictions, masked_lm_head, packing_inputs


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

  def generator_logits(self, tokens, valid, positions, train: bool, **packing) -> jnp.ndarray:
    """[B, K, V] logits at the masked `positions`."""
    hidden = self.generator(tokens, valid, train=train, **_encoder_packing(packing))
    hidden = jnp.take_along_axis(hidden, positions[..., None], axis=1)
    return self.generator_head(hidden, self.generator.attend)

  def discriminator_logits(self, tokens, valid, train: bool, **packing) -> jnp.ndarray:
    """[B, L] logits that each token was replaced."""
    hidden = self.discriminator(tokens, valid, train=train, **_encoder_packing(packing))
    hidden = nn.gelu(self.discriminator_dense(hidden))
    return self.discriminator_out(hidden)[..., 0].astype(jnp.float32)

  def discriminator_features(self, tokens, valid, **packing) -> jnp.ndarray:
    return self.discriminator(tokens, valid, train=False, **_encoder_packing(packing))

  def __call__(self, tokens, valid, positions, train: bool = True, **packing):
    return (
      self.generator_logits(tokens, valid, positions, train, **packing),
      self.discriminator_logits(tokens, valid, train, **packing),
    )


def _encoder_packing(packing: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """`packing_inputs` names -> TransformerEncoder argument names."""
  renamed = {"token_positions": "positions"}
  return {renamed.get(k, k): v for k, v in packing.items()}


@TASKS.register("electra")
class Electra(Task):
  """ELECTRA on token rows. `config.model` / `model_kwargs` describe the discriminator (a
  `transformer_encoder`).

  Options (`config.task_kwargs`): generator_fraction (0.25), discriminator_weight (50),
  mask_rate (0.15), mask_prob (0.85: shown as [MASK]; the rest stay unchanged), sampling
  temperature of the generator (1.0), max_predictions (0 picks `default_max_predictions`).
  """

  modality = "text"

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
    info = dataset.info
    seq_len = dataset.split(dataset.train_split)["tokens"].shape[1]
    discriminator = build_model(config, vocab_size=info["vocab_size"], max_length=seq_len)
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
    self.pad_id = info["pad_id"]
    self.discriminator_weight = discriminator_weight
    self.temperature = temperature
    self.augment = TextAugmenter(config.get("augment", {}), info)
    self.mask_options = dict(
      masking="dynamic",
      special_ids=tuple(info["special_ids"]),
      mask_id=info["mask_id"],
      vocab_size=info.get("text_vocab_size", info["vocab_size"]),
      rate=mask_rate,
      mask_prob=mask_prob,
      random_prob=0.0,
      max_predictions=max_predictions or default_max_predictions(seq_len, mask_rate),
    )

  def init(self, rng, batch):
    tokens = batch["tokens"]
    positions = jnp.zeros((tokens.shape[0], self.mask_options["max_predictions"]), jnp.int32)
    return split_variables(
      self.model.init(rng, tokens, tokens != self.pad_id, positions, train=False)
    )

  def predictions(self, params, model_state, batch, rng, train: bool) -> dict[str, jax.Array]:
    """Masks, samples replacements and runs both networks. Returns generator logits/targets/
    weights at the masked positions, the corrupted row, the discriminator's logits, its
    replaced-token labels and the weights of real (non-padding) tokens."""
    mask_key, sample_key, generator_key, discriminator_key = jax.random.split(rng, 4)
    tokens = batch["tokens"]
    valid = tokens != self.pad_id
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

  def loss_fn(self, params, model_state, batch, rng):
    augment_key, rng = jax.random.split(rng)
    batch = self.augment(augment_key, batch)
    out = self.predictions(params, model_state, batch, rng, train=True)
    weights, token_weights = out["weights"], out["token_weights"]
    nll = -jnp.take_along_axis(
      jax.nn.log_softmax(out["generator_logits"]), out["targets"][..., None], -1
    )[..., 0]
    generator_loss = (nll * weights).sum() / jnp.maximum(weights.sum(), 1.0)
    bce = optax.sigmoid_binary_cross_entropy(out["discriminator_logits"], out["labels"])
    count = jnp.maximum(token_weights.sum(), 1.0)
    discriminator_loss = (bce * token_weights).sum() / count
    detected = (out["discriminator_logits"] > 0) == (out["labels"] > 0)
    metrics = {
      "generator_loss": generator_loss,
      "discriminator_loss": discriminator_loss,
      "generator_accuracy": ((out["generator_logits"].argmax(-1) == out["targets"]) * weights).sum()
      / jnp.maximum(weights.sum(), 1.0),
      "discriminator_accuracy": (detected * token_weights).sum() / count,
      "replaced_fraction": (out["labels"] * token_weights).sum() / count,
    }
    loss = generator_loss + self.discriminator_weight * discriminator_loss
    return loss, (metrics, model_state)

  def represent(self, params, model_state, batch):
    tokens = batch["tokens"]
    valid = tokens != self.pad_id
    hidden = self.model.apply(
      {"params": params, **model_state},
      tokens,
      valid,
      method=ElectraModel.discriminator_features,
      **packing_inputs(batch),
    )
    return mean_over_valid(hidden, valid)

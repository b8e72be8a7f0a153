"""SimCLR (Chen et al., 2020): two augmented views, a projector, NT-Xent over the global batch."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data.augment import AugmentConfig, augment_batch
from ssl_jax.data.source import Dataset
from ssl_jax.models.heads import MLPHead
from ssl_jax.registry import TASKS, check_options
from ssl_jax.tasks.base import Task, build_model, split_variables


def nt_xent(z: jnp.ndarray, temperature: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Normalized-temperature cross entropy over 2N embeddings where rows i and i+N are a pair.

  Each embedding's positive is its pair; the other 2N-2 embeddings are its negatives.
  Returns (mean loss, fraction of rows whose most similar other row is the positive).
  Under jit with the batch sharded, XLA gathers z so the negatives span the global batch.
  """
  z = z.astype(jnp.float32)
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-12)
  two_n = z.shape[0]
  n = two_n // 2
  logits = z @ z.T / temperature
  logits = jnp.where(jnp.eye(two_n, dtype=bool), -jnp.inf, logits)
  positives = jnp.concatenate([jnp.arange(n, two_n), jnp.arange(0, n)])
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  loss = -jnp.mean(jnp.take_along_axis(log_probs, positives[:, None], axis=-1))
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == positives)
  return loss, accuracy


class SimCLRModel(nn.Module):
  """Encoder followed by the projector; `represent` stops at the encoder."""

  encoder: nn.Module
  projector: nn.Module

  def __call__(self, images: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    return self.projector(self.encoder(images, train=train), train=train)

  def represent(self, images: jnp.ndarray) -> jnp.ndarray:
    return self.encoder(images, train=False)


@TASKS.register("simclr")
class SimCLR(Task):
  """Contrastive learning of two views with NT-Xent.

  Options (`config.task_kwargs`): temperature, projector_hidden_dim, projector_dim,
  projector_layers. Views come from `config.augment` (see `AugmentConfig`).
  """

  modality = "image"

  def __init__(self, config: ml_collections.ConfigDict, dataset: Dataset,
               temperature: float = 0.1, projector_hidden_dim: int = 512,
               projector_dim: int = 128, projector_layers: int = 2):
    super().__init__(config, dataset)
    augment = config.get("augment", ml_collections.ConfigDict()).to_dict()
    check_options("config.augment", augment, AugmentConfig.__dataclass_fields__)
    self.augment = AugmentConfig(**augment)
    self.temperature = temperature
    self.model = SimCLRModel(
        encoder=build_model(config),
        projector=MLPHead(projector_hidden_dim, projector_dim, projector_layers))

  def init(self, rng, batch):
    return split_variables(self.model.init(rng, batch["image"], train=False))

  def views(self, rng: jax.Array, images: jnp.ndarray) -> jnp.ndarray:
    """Two independent augmented views, stacked as [2B, H, W, C] (view 1 first)."""
    rng_1, rng_2 = jax.random.split(rng)
    return jnp.concatenate([augment_batch(rng_1, images, self.augment),
                            augment_batch(rng_2, images, self.augment)])

  def loss_fn(self, params, model_state, batch, rng):
    views = self.views(rng, batch["image"])
    z, new_state = self.model.apply({"params": params, **model_state}, views, train=True,
                                    mutable=list(model_state))
    loss, accuracy = nt_xent(z, self.temperature)
    return loss, ({"contrastive_accuracy": accuracy}, new_state)

  def represent(self, params, model_state, batch):
    return self.model.apply({"params": params, **model_state}, batch["image"],
                            method=SimCLRModel.represent)

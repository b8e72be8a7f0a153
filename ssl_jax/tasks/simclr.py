"""SimCLR (Chen et al., 2020): two augmented views, a projector, NT-Xent over the global batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data.source import Dataset
from ssl_jax.models.heads import MLPHead
from ssl_jax.models.timm_weights import resnet_from_timm, vit_from_timm
from ssl_jax.registry import TASKS
from ssl_jax.runs.model_source import Architecture, register_architecture
from ssl_jax.tasks.vision import VisionTask, merge_states


def _resnet_backbone(state_dict, config):
  model, params, stats = resnet_from_timm(state_dict, config)
  return model, {"encoder": params}, {"encoder": {"batch_stats": stats}}


def _vit_backbone(state_dict, config):
  model, params = vit_from_timm(state_dict, config)
  return model, {"encoder": params}


# timm's ResNet and ViT files (a `.safetensors`, or a directory as timm's `save_for_hf` writes
# it) are read as the encoder of a SimCLR run (a fresh projector): what image fine-tunes,
# probes and continued pretraining of any vision task start from.
register_architecture("timm:resnet", Architecture("simclr", "resnet", _resnet_backbone))
register_architecture("timm:vit", Architecture("simclr", "vit", _vit_backbone))


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


@TASKS.register("simclr")
class SimCLR(VisionTask):
  """Contrastive learning of two views with NT-Xent.

  Options (`config.task_kwargs`): temperature, projector_hidden_dim, projector_dim,
  projector_layers. Views come from `config.augment` (see `data.augment.view_configs`).
  Both views go through the encoder as one batch, so batch norm sees 2B images (as in the
  official code).
  """

  head_chain = ("projector",)

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    temperature: float = 0.1,
    projector_hidden_dim: int = 512,
    projector_dim: int = 128,
    projector_layers: int = 2,
  ):
    super().__init__(config, dataset)
    self.temperature = temperature
    self.modules["projector"] = MLPHead(projector_hidden_dim, projector_dim, projector_layers)

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    views = jnp.concatenate(self.two_views(rng, batch["image"]))
    h, encoder_state = self.apply("encoder", params, model_state, views)
    z, projector_state = self.apply("projector", params, model_state, h)
    loss, accuracy = nt_xent(z, self.temperature)
    loss, metrics = self.with_probe(
      loss, {"contrastive_accuracy": accuracy}, params, h[: len(batch["image"])], batch
    )
    return loss, (
      metrics,
      merge_states(model_state, {"encoder": encoder_state, "projector": projector_state}),
    )

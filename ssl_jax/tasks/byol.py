"""BYOL (Grill et al., 2020): an online network predicts a momentum target's projection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data.source import Dataset
from ssl_jax.models.heads import MLPHead
from ssl_jax.registry import TASKS
from ssl_jax.tasks.vision import VisionTask, cosine_similarity


def byol_loss(prediction: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
  """Mean of 2 - 2 cos(prediction, target); no gradient flows into `target`."""
  return jnp.mean(2 - 2 * cosine_similarity(prediction, jax.lax.stop_gradient(target)))


@TASKS.register("byol")
class BYOL(VisionTask):
  """Online encoder -> projector -> predictor against a target encoder -> projector whose
  weights are an EMA of the online ones (momentum `base_momentum` -> 1 on a cosine).

  The loss is symmetrised: view 1's prediction against view 2's target plus the reverse.
  The asymmetric augmentation of the paper is set with `config.augment.view1/view2`.
  """

  target_modules = ("encoder", "projector")
  head_chain = ("projector", "predictor")

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    base_momentum: float = 0.996,
    projector_hidden_dim: int = 4096,
    projector_dim: int = 256,
    predictor_hidden_dim: int = 4096,
  ):
    super().__init__(config, dataset, base_momentum)
    self.modules["projector"] = MLPHead(projector_hidden_dim, projector_dim, 2)
    self.modules["predictor"] = MLPHead(predictor_hidden_dim, projector_dim, 2)

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    h_1, (p_1, p_2), (target_1, target_2), model_state = self.predict_momentum_targets(
      params, model_state, rng, batch["image"]
    )
    loss = byol_loss(p_1, target_2) + byol_loss(p_2, target_1)
    metrics = {"cosine_similarity": jnp.mean(cosine_similarity(p_1, target_2))}
    loss, metrics = self.with_probe(loss, metrics, params, h_1, batch)
    return loss, (metrics, model_state)

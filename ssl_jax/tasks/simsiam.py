"""SimSiam (Chen & He, 2021): BYOL without the momentum target; stop-gradient prevents collapse."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data.source import Dataset
from ssl_jax.models.heads import MLPHead
from ssl_jax.registry import TASKS
from ssl_jax.tasks.vision import VisionTask, cosine_similarity, l2_normalize


def simsiam_loss(
  p_1: jnp.ndarray, p_2: jnp.ndarray, z_1: jnp.ndarray, z_2: jnp.ndarray
) -> jnp.ndarray:
  """-(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2, averaged over the batch (minimum -1)."""
  sg = jax.lax.stop_gradient
  return (
    -(jnp.mean(cosine_similarity(p_1, sg(z_2))) + jnp.mean(cosine_similarity(p_2, sg(z_1)))) / 2
  )


@TASKS.register("simsiam")
class SimSiam(VisionTask):
  """Encoder -> 3-layer projector (batch-normed output) -> bottleneck predictor."""

  head_chain = ("projector", "predictor")

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    projector_hidden_dim: int = 2048,
    projector_dim: int = 2048,
    predictor_hidden_dim: int = 512,
  ):
    super().__init__(config, dataset)
    self.modules["projector"] = MLPHead(
      projector_hidden_dim, projector_dim, 3, batch_norm_output=True
    )
    self.modules["predictor"] = MLPHead(predictor_hidden_dim, projector_dim, 2)

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    view_1, view_2 = self.two_views(rng, batch["image"])
    chain = ("encoder", "projector", "predictor")
    (h_1, z_1, p_1), model_state = self.forward(chain, params, model_state, view_1)
    (_, z_2, p_2), model_state = self.forward(chain, params, model_state, view_2)
    loss = simsiam_loss(p_1, p_2, z_1, z_2)
    # The per-dimension std of normalised z; ~1/sqrt(dim) when healthy, 0 at collapse.
    z_norm = l2_normalize(z_1)
    metrics = {"z_std": jnp.mean(jnp.std(z_norm, axis=0))}
    loss, metrics = self.with_probe(loss, metrics, params, h_1, batch)
    return loss, (metrics, model_state)

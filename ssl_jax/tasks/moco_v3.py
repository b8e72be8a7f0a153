"""MoCo v3 (Chen, Xie & He, 2021): a query predictor against momentum keys, in-batch negatives."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax.data.source import Dataset
from ssl_jax.models.heads import MLPHead
from ssl_jax.registry import TASKS
from ssl_jax.tasks.vision import VisionTask, l2_normalize


def moco_contrastive(q: jnp.ndarray, k: jnp.ndarray, temperature: float) -> jnp.ndarray:
  """InfoNCE of queries against keys, where q[i]'s positive is k[i], scaled by 2T (as in the
  official code). Keys carry no gradient; under jit the keys span the global batch."""
  q = l2_normalize(q)
  k = jax.lax.stop_gradient(l2_normalize(k))
  logits = q @ k.T / temperature
  labels = jnp.arange(q.shape[0])
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean() * 2 * temperature


@TASKS.register("moco_v3")
class MoCoV3(VisionTask):
  """Encoder -> 3-layer projector -> 2-layer predictor; the momentum encoder -> projector
  makes the keys. Loss: ctr(q1, k2) + ctr(q2, k1)."""

  target_modules = ("encoder", "projector")
  head_chain = ("projector", "predictor")

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    base_momentum: float = 0.99,
    temperature: float = 0.2,
    projector_hidden_dim: int = 4096,
    projector_dim: int = 256,
    predictor_hidden_dim: int = 4096,
  ):
    super().__init__(config, dataset, base_momentum)
    self.temperature = temperature
    self.modules["projector"] = MLPHead(
      projector_hidden_dim, projector_dim, 3, batch_norm_output=True
    )
    self.modules["predictor"] = MLPHead(predictor_hidden_dim, projector_dim, 2)

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    h_1, (q_1, q_2), (k_1, k_2), model_state = self.predict_momentum_targets(
      params, model_state, rng, batch["image"]
    )
    loss = moco_contrastive(q_1, k_2, self.temperature) + moco_contrastive(
      q_2, k_1, self.temperature
    )
    accuracy = jnp.mean(jnp.argmax(q_1 @ k_2.T, -1) == jnp.arange(q_1.shape[0]))
    loss, metrics = self.with_probe(loss, {"contrastive_accuracy": accuracy}, params, h_1, batch)
    return loss, (metrics, model_state)

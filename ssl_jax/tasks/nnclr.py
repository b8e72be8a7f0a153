"""NNCLR (Dwibedi et al., 2021): contrastive learning whose positive for each view is the
nearest neighbour of its embedding in a support queue of past embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax.data.source import Dataset
from ssl_jax.models.heads import MLPHead
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.vision import VisionTask, l2_normalize

QUEUE, POINTER = "nnclr_queue", "nnclr_pointer"  # model_state keys of the support set


def nearest_neighbours(embeddings: jnp.ndarray, queue: jnp.ndarray) -> jnp.ndarray:
  """The queue row with the highest cosine similarity to each (normalised) embedding; the
  support set carries no gradient."""
  queue = jax.lax.stop_gradient(queue)
  return queue[jnp.argmax(embeddings @ queue.T, axis=-1)]


def nnclr_loss(
  neighbours: jnp.ndarray, predictions: jnp.ndarray, temperature: float
) -> jnp.ndarray:
  """InfoNCE of each neighbour against the batch's predictions: row i's positive is
  prediction i (the other view of the same image), the other predictions are negatives."""
  logits = l2_normalize(neighbours) @ l2_normalize(predictions).T / temperature
  labels = jnp.arange(len(logits))
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def enqueue(queue: jnp.ndarray, pointer: jax.Array, embeddings: jnp.ndarray):
  """(queue with `embeddings` written at `pointer`, the next pointer): first in, first out.
  The queue's length is a multiple of the batch, so a write never wraps."""
  queue = jax.lax.dynamic_update_slice(
    queue, jax.lax.stop_gradient(embeddings).astype(queue.dtype), (pointer, 0)
  )
  return queue, (pointer + len(embeddings)) % len(queue)


@TASKS.register("nnclr")
class NNCLR(VisionTask):
  """Two views -> encoder -> projector (embeddings z, normalised) -> predictor (p). The loss is
  the symmetrised InfoNCE of NN(z_1) against p_2 and NN(z_2) against p_1, NN being the nearest
  neighbour in the support queue; view 1's embeddings then replace the oldest queue rows. The
  queue starts as random unit vectors and lives in the model state (checkpointed, resumed).
  Options as solo-learn's: temperature 0.2, queue_size (a multiple of the batch size).
  """

  head_chain = ("projector", "predictor")

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    temperature: float = 0.2,
    queue_size: int = 65536,
    projector_hidden_dim: int = 2048,
    projector_dim: int = 256,
    predictor_hidden_dim: int = 4096,
  ):
    super().__init__(config, dataset)
    if queue_size <= 0 or queue_size % config.batch_size:
      raise ConfigError(
        f"config.task_kwargs.queue_size={queue_size} must be a positive multiple of "
        f"config.batch_size={config.batch_size} (a batch is enqueued whole)."
      )
    self.temperature, self.queue_size, self.projector_dim = temperature, queue_size, projector_dim
    # solo-learn's heads: a 3-layer projector ending in batch norm, a 2-layer predictor.
    self.modules["projector"] = MLPHead(
      projector_hidden_dim, projector_dim, 3, batch_norm_output=True
    )
    self.modules["predictor"] = MLPHead(predictor_hidden_dim, projector_dim, 2)

  def init(self, rng, batch):
    params, model_state = super().init(rng, batch)
    queue = jax.random.normal(jax.random.fold_in(rng, 7), (self.queue_size, self.projector_dim))
    model_state[QUEUE] = l2_normalize(queue)
    model_state[POINTER] = jnp.zeros((), jnp.int32)
    return params, model_state

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    view_1, view_2 = self.two_views(rng, batch["image"])
    chain = ("encoder", "projector", "predictor")
    (h_1, z_1, p_1), model_state = self.forward(chain, params, model_state, view_1)
    (_, z_2, p_2), model_state = self.forward(chain, params, model_state, view_2)
    z_1, z_2 = l2_normalize(z_1), l2_normalize(z_2)
    queue = model_state[QUEUE]
    neighbour_1, neighbour_2 = nearest_neighbours(z_1, queue), nearest_neighbours(z_2, queue)
    loss = (
      nnclr_loss(neighbour_1, p_2, self.temperature)
      + nnclr_loss(neighbour_2, p_1, self.temperature)
    ) / 2
    queue, pointer = enqueue(queue, model_state[POINTER], z_1)
    # How often both views of an image find the same support row: the queue's consistency.
    metrics = {"neighbour_agreement": jnp.mean(jnp.all(neighbour_1 == neighbour_2, -1))}
    loss, metrics = self.with_probe(loss, metrics, params, h_1, batch)
    return loss, (metrics, {**model_state, QUEUE: queue, POINTER: pointer})

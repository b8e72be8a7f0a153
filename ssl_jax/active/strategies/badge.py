"""BADGE (Ash et al., 2020): k-means++ seeding on gradient embeddings, so the batch is both
uncertain (long gradients) and diverse (far apart).

The gradient embedding of example i is the gradient of the cross-entropy at its predicted
class with respect to the last layer's weights: g_i = (p_i - e_{yhat_i}) (x) h_i, with p_i the
class probabilities, yhat_i = argmax p_i and h_i the penultimate features. It has C x D
entries, but distances never need it: <g_i, g_j> = <a_i, a_j> <h_i, h_j> with a = p - e_yhat,
so the pool of 100k never builds a 100k x C*D matrix. The first center is the longest
gradient; each next one is drawn with probability proportional to its squared distance from
the centers so far (D^2 sampling)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool, QueryStrategy


def gradient_embedding(probs: jax.Array, features: jax.Array) -> jax.Array:
  """[N, C * D] g_i = (p_i - e_yhat_i) (x) h_i, for tests and small pools (the query itself
  uses the factorized distances)."""
  a = probs - jax.nn.one_hot(jnp.argmax(probs, -1), probs.shape[-1], dtype=probs.dtype)
  return (a[:, :, None] * features[:, None, :]).reshape(probs.shape[0], -1)


@functools.partial(jax.jit, static_argnums=(4,))
def badge_centers(
  probs: jax.Array, features: jax.Array, labelled: jax.Array, key: jax.Array, count: int
) -> jax.Array:
  a = probs - jax.nn.one_hot(jnp.argmax(probs, -1), probs.shape[-1], dtype=probs.dtype)
  norms = jnp.sum(a * a, -1) * jnp.sum(features * features, -1)  # ||g_i||^2

  def squared_distance_to(j):
    inner = (a @ a[j]) * (features @ features[j])
    return jnp.maximum(norms + norms[j] - 2.0 * inner, 0.0)

  first = jnp.argmax(jnp.where(labelled, -jnp.inf, norms))
  taken = labelled.at[first].set(True)  # labelled or chosen: never drawn
  distance = squared_distance_to(first)

  def pick(carry, k):
    distance, taken = carry
    weights = jnp.where(taken, 0.0, distance)
    # Every candidate identical to a center: draw uniformly among those left.
    weights = jnp.where(jnp.sum(weights) > 0, weights, jnp.where(taken, 0.0, 1.0))
    chosen = jax.random.choice(
      jax.random.fold_in(key, k), distance.shape[0], p=weights / jnp.sum(weights)
    )
    distance = jnp.minimum(distance, squared_distance_to(chosen))
    return (distance, taken.at[chosen].set(True)), chosen

  _, rest = jax.lax.scan(pick, (distance, taken), jnp.arange(1, count))
  return jnp.concatenate([first[None], rest])


@QUERY_STRATEGIES.register("badge")
class BadgeQuery(QueryStrategy):
  """k-means++ seeds of the gradient embeddings of the unlabelled pool."""

  needs = ("features", "probs")

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    return np.asarray(
      badge_centers(
        jnp.asarray(pool.probs, jnp.float32),
        jnp.asarray(pool.features, jnp.float32),
        jnp.asarray(pool.labelled),
        key,
        budget,
      )
    )

"""Core-set (Sener & Savarese, 2018): k-center greedy in feature space. Each choice is the
unlabelled example farthest from every labelled (and already chosen) one, so the labelled set
covers the pool with the smallest radius. With no labels at all the first choice is the
example farthest from the pool's mean (deterministic), then k-center greedy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.active.strategies import geometry
from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool, QueryStrategy


@QUERY_STRATEGIES.register("coreset")
class CoresetQuery(QueryStrategy):
  """k-center greedy on (by default L2-normalized) features."""

  needs = ("features",)

  def __init__(self, normalize: bool = True):
    self.normalize = normalize

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    del key
    x = geometry.normalize(pool.features) if self.normalize else jnp.asarray(pool.features)
    labelled = np.flatnonzero(pool.labelled)
    first: list[int] = []
    if len(labelled):
      distance = geometry.min_squared_distance(x, x[labelled])
    else:  # cold start: the example farthest from the mean is the first center
      first = [int(jnp.argmax(jnp.sum((x - x.mean(0)) ** 2, -1)))]
      distance = jnp.sum((x - x[first[0]]) ** 2, -1).at[first[0]].set(-jnp.inf)
      budget -= 1
    distance = jnp.where(jnp.asarray(pool.labelled), -jnp.inf, distance)
    rest = np.asarray(geometry.farthest_points(x, distance, budget)) if budget else []
    return np.concatenate([np.asarray(first, np.int64), np.asarray(rest, np.int64)])

"""TypiClust (Hacohen, Dekel & Weinshall, 2022): for tiny budgets, label typical examples of
different clusters.

The pool's (L2-normalized) features are clustered by k-means into |labelled| + budget clusters
(at most `max_clusters`). Then, `budget` times, the cluster with the fewest labelled (and
chosen) examples and, among those, the most members is picked (clusters with fewer than
`min_cluster_size` members are skipped), and its most typical member is chosen:
  typicality(x) = 1 / mean distance from x to its K = min(k_neighbours, |cluster| - 1) nearest
  neighbours inside the cluster.

k-means runs on a fixed random Gaussian projection of the normalized features to
`projection_dim` dimensions (Johnson-Lindenstrauss: distances within a few percent), which
makes clustering a pool of 100k in 256 dimensions a matter of seconds; typicality is measured
in the full feature space (0 = cluster in the full space).
"""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.active.strategies import geometry
from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool, QueryStrategy
from ssl_jax.value_checks import Range


def typicality(members: jax.Array, k_neighbours: int) -> np.ndarray:
  """[n] 1 / mean Euclidean distance to the K nearest other members (K = min(k, n - 1))."""
  k = min(k_neighbours, members.shape[0] - 1)
  mean_distances = []
  for i in range(0, members.shape[0], geometry.BLOCK):
    d = geometry.squared_distances(members[i : i + geometry.BLOCK], members)
    # The nearest "neighbour" of each row is itself (distance 0): take k + 1, drop it.
    nearest = -jax.lax.top_k(-d, k + 1)[0][:, 1:]
    mean_distances.append(jnp.mean(jnp.sqrt(nearest), -1))
  return 1.0 / np.maximum(np.asarray(jnp.concatenate(mean_distances)), 1e-12)


@QUERY_STRATEGIES.register("typiclust")
class TypiClustQuery(QueryStrategy):
  """The most typical example of each of the largest clusters that have no label yet."""

  needs = ("features",)

  def __init__(
    self,
    k_neighbours: Annotated[int, Range(1)] = 20,
    min_cluster_size: Annotated[int, Range(1)] = 5,
    max_clusters: Annotated[int, Range(1)] = 500,
    kmeans_iterations: Annotated[int, Range(1)] = 20,
    projection_dim: Annotated[int, Range(0)] = 32,
  ):
    self.k_neighbours = k_neighbours
    self.min_cluster_size = min_cluster_size
    self.max_clusters = max_clusters
    self.kmeans_iterations = kmeans_iterations
    self.projection_dim = projection_dim

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    x = geometry.normalize(pool.features)
    count = int(min(np.count_nonzero(pool.labelled) + budget, self.max_clusters, pool.size))
    projected = geometry.random_projection(x, self.projection_dim, jax.random.fold_in(key, 1))
    _, assignment = geometry.kmeans(projected, count, key, self.kmeans_iterations)
    assignment = np.asarray(assignment)
    sizes = np.bincount(assignment, minlength=count)
    labelled_in = np.bincount(assignment[pool.labelled], minlength=count)
    taken = pool.labelled.copy()
    chosen = []
    for _ in range(budget):
      open_members = np.bincount(assignment[~taken], minlength=count)
      eligible = (sizes >= self.min_cluster_size) & (open_members > 0)
      if not eligible.any():  # every big cluster used up: any cluster with a free member
        eligible = open_members > 0
      # Fewest labels first, then the most members, then the lower cluster id.
      order = np.lexsort((np.arange(count), -sizes, labelled_in))
      cluster = next(c for c in order if eligible[c])
      members = np.flatnonzero(assignment == cluster)
      scores = typicality(x[members], self.k_neighbours) if len(members) > 1 else np.ones(1)
      scores[taken[members]] = -np.inf
      pick = int(members[np.argmax(scores)])
      chosen.append(pick)
      taken[pick] = True
      labelled_in[cluster] += 1
    return np.asarray(chosen)

"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, 2022): choose the examples whose balls of
radius delta cover the most of the pool not yet covered.

In the (L2-normalized) feature space, example j covers i when ||x_i - x_j|| < delta. Points
within delta of a labelled example are covered from the start; then, `budget` times, the
example covering the most uncovered points is chosen and what it covers is removed (greedy
max coverage, a (1 - 1/e) approximation). Once every point is covered, the rest of the budget
goes to random unlabelled examples.

delta (`radius`; 0 = choose it) follows the paper's purity rule: cluster the pool by k-means
into `purity_clusters` clusters (the number of classes, when known; 0 = the square root of the
pool size capped at 100); a ball is pure when all its points share the center's cluster; delta
is the largest candidate radius whose fraction of pure balls is at least `purity` (0.95).

The graph is built in blocks over all pairs (N^2 D work): a pool of 100k in 256 dimensions
is projected to `projection_dim` dimensions by a fixed random Gaussian projection first
(distances kept within a few percent, Johnson-Lindenstrauss), which brings it to seconds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.discover import geometry
from ssl_jax.discover.query import QUERY_STRATEGIES, Pool, QueryStrategy

CANDIDATE_RADII = tuple(round(0.05 * k, 2) for k in range(1, 31))  # 0.05 ... 1.5


@jax.jit
def _nearest_other_cluster(block, block_clusters, points, clusters) -> jax.Array:
  """[B] distance from each block point to the nearest point of another cluster."""
  d = geometry.squared_distances(block, points)
  other = block_clusters[:, None] != clusters[None, :]
  return jnp.sqrt(jnp.min(jnp.where(other, d, jnp.inf), axis=1))


@jax.jit
def _inside(block, points, radius) -> jax.Array:
  return geometry.squared_distances(block, points) < radius * radius


def ball_edges(points: jax.Array, radius: float) -> tuple[np.ndarray, np.ndarray]:
  """(centers, members): every pair with ||x_center - x_member|| < radius, self-pairs
  included, as two index arrays sorted by center."""
  centers, members = [], []
  for i in range(0, points.shape[0], geometry.BLOCK):
    rows, cols = np.nonzero(np.asarray(_inside(points[i : i + geometry.BLOCK], points, radius)))
    centers.append(rows + i)
    members.append(cols)
  return np.concatenate(centers), np.concatenate(members)


def purity_radius(points: jax.Array, clusters: np.ndarray, purity: float) -> float:
  """The largest candidate radius at which at least `purity` of the balls hold only points
  of their center's cluster (the paper's rule for delta)."""
  clusters = jnp.asarray(clusters)
  nearest_other = np.concatenate(
    [
      np.asarray(
        _nearest_other_cluster(
          points[i : i + geometry.BLOCK], clusters[i : i + geometry.BLOCK], points, clusters
        )
      )
      for i in range(0, points.shape[0], geometry.BLOCK)
    ]
  )
  # A ball of radius r is pure when no other-cluster point is nearer than r.
  pure = [np.mean(nearest_other >= radius) for radius in CANDIDATE_RADII]
  passing = [radius for radius, fraction in zip(CANDIDATE_RADII, pure) if fraction >= purity]
  return max(passing) if passing else CANDIDATE_RADII[0]


@QUERY_STRATEGIES.register("probcover")
class ProbCoverQuery(QueryStrategy):
  """Greedy max coverage of delta-balls in feature space."""

  needs = ("features",)

  def __init__(
    self,
    radius: float = 0.0,
    purity: float = 0.95,
    purity_clusters: int = 0,
    projection_dim: int = 32,
  ):
    self.radius, self.purity = radius, purity
    self.purity_clusters, self.projection_dim = purity_clusters, projection_dim

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    x = geometry.normalize(pool.features)
    x = geometry.random_projection(x, self.projection_dim, jax.random.fold_in(key, 1))
    radius = self.radius
    if not radius:
      count = self.purity_clusters or int(min(100, max(2, np.sqrt(pool.size))))
      _, clusters = geometry.kmeans(x, count, jax.random.fold_in(key, 2))
      radius = purity_radius(x, np.asarray(clusters), self.purity)
    self.chosen_radius = radius
    centers, members = ball_edges(x, radius)
    covered = np.zeros(pool.size, bool)
    labelled = np.flatnonzero(pool.labelled)
    covered[members[np.isin(centers, labelled)]] = True
    alive = ~covered[members]  # edges whose member is still uncovered
    taken = pool.labelled.copy()
    chosen = []
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    for _ in range(budget):
      degree = np.bincount(centers[alive], minlength=pool.size).astype(np.float64)
      degree[taken] = -1
      if degree.max() <= 0:  # everything covered: the rest at random
        rest = rng.permutation(np.flatnonzero(~taken))[: budget - len(chosen)]
        chosen.extend(int(i) for i in rest)
        break
      pick = int(np.argmax(degree))
      chosen.append(pick)
      taken[pick] = True
      start, stop = np.searchsorted(centers, [pick, pick + 1])  # edges are sorted by center
      newly = members[start:stop]
      covered[newly] = True
      alive &= ~covered[members]
    return np.asarray(chosen)

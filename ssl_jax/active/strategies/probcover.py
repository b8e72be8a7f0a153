"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, 2022): choose the examples whose balls of
radius delta cover the most of the pool not yet covered.

In the (L2-normalized) feature space, example j covers i when ||x_i - x_j|| < delta. Points
within delta of a labelled example are covered from the start; then, `budget` times, the
example covering the most uncovered points is chosen and what it covers is removed (greedy
max coverage, a (1 - 1/e) approximation). Once every point is covered, the rest of the budget
goes to random unlabelled examples.

delta (`radius`; 0 = choose it) follows the paper's purity rule: cluster the pool by k-means
into `purity_clusters` clusters (0 = the number of classes, which the loop passes as
`pool.num_classes`, as in the paper; without it the square root of the pool size, capped at
100); a ball is pure when all its points share the center's cluster; delta is the largest
candidate radius whose fraction of pure balls is at least `purity` (0.95). The fraction is
measured on up to `purity_sample` (4,096) seeded balls against the whole pool (its standard
error is under 0.4 points), not on all N. Where classes do not form tight clusters, the rule
picks a small delta whose balls cover little of the pool per pick (the digits run of docs/discovery.md).

Features are normalized. The ball graph is exact (all pairs, in the full feature space) for
pools up to `exact_limit` (20,000). Above it, the features are first projected to
`projection_dim` dimensions by a fixed random Gaussian map and normalized again (pairwise
distances kept within a few percent, Johnson-Lindenstrauss), and the search is the
inverted-file scheme of faiss's IVF range search: k-means cells of about 256 points, and each
cell's balls looked for among the points of its `probe_cells` (16) nearest cells, skipping any
cell the triangle inequality proves out of reach. A neighbour in an unprobed cell can be
missed, which undercounts coverage in the sparsest regions; 100 picks from 100k x 256 then
take seconds instead of minutes of N^2 work.
"""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.active.strategies import geometry
from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool, QueryStrategy
from ssl_jax.value_checks import Range

CANDIDATE_RADII = tuple(round(0.05 * k, 2) for k in range(1, 31))  # 0.05 ... 1.5
CELL_SIZE = 256


@jax.jit
def _nearest_other_cluster(block, block_clusters, points, clusters) -> jax.Array:
  """[B] distance from each block point to the nearest point of another cluster."""
  d = geometry.squared_distances(block, points)
  other = block_clusters[:, None] != clusters[None, :]
  return jnp.sqrt(jnp.min(jnp.where(other, d, jnp.inf), axis=1))


def purity_radius(
  points: jax.Array, clusters: np.ndarray, purity: float, sample: int = 0, seed: int = 0
) -> float:
  """The largest candidate radius at which at least `purity` of the balls hold only points
  of their center's cluster (the paper's rule for delta), measured on `sample` seeded balls
  (0 or >= N: every ball)."""
  n = points.shape[0]
  anchors = np.arange(n)
  if 0 < sample < n:
    anchors = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
  clusters = jnp.asarray(clusters)
  nearest_other = np.concatenate(
    [
      np.asarray(
        _nearest_other_cluster(
          points[anchors[i : i + geometry.BLOCK]],
          clusters[anchors[i : i + geometry.BLOCK]],
          points,
          clusters,
        )
      )
      for i in range(0, len(anchors), geometry.BLOCK)
    ]
  )
  # A ball of radius r is pure when no other-cluster point is nearer than r.
  pure = [np.mean(nearest_other >= radius) for radius in CANDIDATE_RADII]
  passing = [radius for radius, fraction in zip(CANDIDATE_RADII, pure) if fraction >= purity]
  return max(passing) if passing else CANDIDATE_RADII[0]


def _pairs_within(a: np.ndarray, b: np.ndarray, min_dot: float) -> tuple[np.ndarray, np.ndarray]:
  """(rows of a, rows of b) of the unit-vector pairs with a . b > min_dot, in blocks."""
  rows, cols = [], []
  for i in range(0, len(a), geometry.BLOCK):
    r, c = np.nonzero(a[i : i + geometry.BLOCK] @ b.T > min_dot)
    rows.append(r + i)
    cols.append(c)
  return np.concatenate(rows), np.concatenate(cols)


def ball_edges(
  points: np.ndarray,
  radius: float,
  exact_limit: int = 20_000,
  probe_cells: int = 16,
  key: jax.Array | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """(centers, members): the pairs of unit vectors with ||x_center - x_member|| < radius,
  self-pairs included, symmetric, sorted by center then member (see the module docstring for
  the cell search above `exact_limit`)."""
  points = np.asarray(points, np.float32)
  n = len(points)
  min_dot = 1.0 - radius * radius / 2.0  # |a - b|^2 = 2 - 2 a.b for unit vectors
  if n <= exact_limit:
    centers, members = _pairs_within(points, points, min_dot)
  else:
    key = jax.random.key(0) if key is None else key
    # Cells fitted on a seeded sample: k-means on all of a large pool costs more than the
    # search it prunes.
    count = max(2, n // CELL_SIZE)
    cell_centers, cells = geometry.kmeans_on_sample(jnp.asarray(points), count, key, 64 * count)
    cells = np.asarray(cells)
    cell_centers = np.asarray(cell_centers)
    order = np.argsort(cells, kind="stable")
    starts = np.searchsorted(cells[order], np.arange(len(cell_centers) + 1))
    spread = np.zeros(len(cell_centers), np.float32)  # each cell's radius around its center
    np.maximum.at(spread, cells, np.linalg.norm(points - cell_centers[cells], axis=1))
    between = np.sqrt(np.maximum(geometry.squared_distances(cell_centers, cell_centers), 0))
    between = np.asarray(between)
    centers, members = [], []
    for cell in np.flatnonzero(np.diff(starts)):
      probed = np.argsort(between[cell])[:probe_cells]
      # Triangle inequality: no point of `other` lies within radius of this cell's points.
      probed = probed[between[cell, probed] - spread[cell] - spread[probed] < radius]
      queries = order[starts[cell] : starts[cell + 1]]
      candidates = np.concatenate([order[starts[c] : starts[c + 1]] for c in probed])
      rows, cols = _pairs_within(points[queries], points[candidates], min_dot)
      centers.append(queries[rows])
      members.append(candidates[cols])
    centers, members = np.concatenate(centers), np.concatenate(members)
    # A pair found from one side only is kept both ways, so balls stay symmetric.
    both = np.unique(np.concatenate([centers * n + members, members * n + centers]))
    centers, members = both // n, both % n
  order = np.lexsort((members, centers))
  return centers[order].astype(np.int64), members[order].astype(np.int64)


def greedy_cover(
  centers: np.ndarray, members: np.ndarray, labelled: np.ndarray, budget: int, seed: list
) -> np.ndarray:
  """`budget` greedy max-coverage picks over the symmetric ball graph (centers sorted); the
  balls of `labelled` points are covered from the start, and once all is covered the rest of
  the budget is drawn at random from the unlabelled."""
  n = len(labelled)
  starts = np.searchsorted(centers, np.arange(n + 1))
  degree = np.diff(starts).astype(np.int64)  # uncovered points in each ball
  covered = np.zeros(n, bool)
  taken = labelled.copy()

  def cover(points: np.ndarray) -> None:
    newly = np.unique(points)
    newly = newly[~covered[newly]]
    covered[newly] = True
    # Balls are symmetric: the balls holding p are the ball of p.
    holders = np.concatenate([members[starts[p] : starts[p + 1]] for p in newly] or [[]])
    np.subtract.at(degree, holders.astype(np.int64), 1)

  labelled_idx = np.flatnonzero(labelled)
  if len(labelled_idx):
    cover(np.concatenate([members[starts[p] : starts[p + 1]] for p in labelled_idx]))
  chosen: list[int] = []
  rng = np.random.default_rng(seed)
  while len(chosen) < budget:
    score = np.where(taken, -1, degree)
    pick = int(np.argmax(score))
    if score[pick] <= 0:  # everything covered: the rest at random
      rest = rng.permutation(np.flatnonzero(~taken))[: budget - len(chosen)]
      chosen.extend(int(i) for i in rest)
      break
    chosen.append(pick)
    taken[pick] = True
    cover(members[starts[pick] : starts[pick + 1]])
  return np.asarray(chosen, np.int64)


@QUERY_STRATEGIES.register("probcover")
class ProbCoverQuery(QueryStrategy):
  """Greedy max coverage of delta-balls in feature space."""

  needs = ("features",)

  def __init__(
    self,
    radius: Annotated[float, Range(0.0)] = 0.0,  # 0: chosen by `purity`
    purity: Annotated[float, Range(0.0, 1.0, low_open=True)] = 0.95,
    purity_clusters: Annotated[int, Range(0)] = 0,
    purity_sample: Annotated[int, Range(1)] = 4096,
    projection_dim: Annotated[int, Range(0)] = 32,
    exact_limit: Annotated[int, Range(1)] = 20_000,
    probe_cells: Annotated[int, Range(1)] = 16,
  ):
    self.radius, self.purity = radius, purity
    self.purity_clusters, self.purity_sample = purity_clusters, purity_sample
    self.projection_dim, self.exact_limit, self.probe_cells = (
      projection_dim,
      exact_limit,
      probe_cells,
    )

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    x = geometry.normalize(pool.features)
    if pool.size > self.exact_limit:  # the cell search: fewer dimensions, cheaper pairs
      x = geometry.normalize(
        geometry.random_projection(x, self.projection_dim, jax.random.fold_in(key, 1))
      )
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    radius = self.radius
    if not radius:
      count = self.purity_clusters or pool.num_classes or int(min(100, max(2, np.sqrt(pool.size))))
      _, clusters = geometry.kmeans_on_sample(x, count, jax.random.fold_in(key, 2), 200 * count)
      radius = purity_radius(x, np.asarray(clusters), self.purity, self.purity_sample, seed[-1])
    self.chosen_radius = radius
    centers, members = ball_edges(
      x, radius, self.exact_limit, self.probe_cells, jax.random.fold_in(key, 3)
    )
    return greedy_cover(centers, members, pool.labelled, budget, seed)

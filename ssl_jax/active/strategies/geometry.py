"""Feature-space geometry the diversity strategies share: squared distances in blocks (a pool
of 100k never makes an N x N matrix), greedy farthest points, and k-means with k-means++
seeding, all jitted."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

BLOCK = 1024  # rows of a distance block: BLOCK x N floats (400 MB for a pool of 100k)


def normalize(features: np.ndarray | jax.Array) -> jax.Array:
  """Rows scaled to unit L2 norm (self-supervised features are compared by angle)."""
  x = jnp.asarray(features, jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def random_projection(points: jax.Array, dim: int, key: jax.Array) -> jax.Array:
  """`points` through a fixed Gaussian map to `dim` dimensions, scaled so squared distances
  are kept in expectation (identity when `dim` is 0 or not smaller)."""
  if not dim or points.shape[1] <= dim:
    return points
  projection = jax.random.normal(key, (points.shape[1], dim), points.dtype)
  return points @ (projection / np.sqrt(dim))


@jax.jit
def squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """[len(a), len(b)] squared Euclidean distances (clipped at 0 against rounding)."""
  d = jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * a @ b.T
  return jnp.maximum(d, 0.0)


def min_squared_distance(points: jax.Array, centers: jax.Array) -> jax.Array:
  """[N] squared distance of each point to its nearest center (inf without centers)."""
  if centers.shape[0] == 0:
    return jnp.full((points.shape[0],), jnp.inf, jnp.float32)
  nearest = [
    jnp.min(squared_distances(points, centers[i : i + BLOCK]), axis=1)
    for i in range(0, centers.shape[0], BLOCK)
  ]
  return functools.reduce(jnp.minimum, nearest)


@functools.partial(jax.jit, static_argnums=(2,))
def farthest_points(points: jax.Array, min_dist: jax.Array, count: int) -> jax.Array:
  """k-center greedy: `count` times, the point farthest from everything chosen so far (and
  from the points `min_dist` already measures), each choice then a center too."""

  def pick(carry, _):
    distance = carry
    chosen = jnp.argmax(distance)
    to_new = jnp.sum((points - points[chosen]) ** 2, -1)
    return jnp.minimum(distance, to_new).at[chosen].set(-jnp.inf), chosen

  _, chosen = jax.lax.scan(pick, min_dist, None, length=count)
  return chosen


@functools.partial(jax.jit, static_argnums=(1,))
def kmeans_plus_plus(points: jax.Array, count: int, key: jax.Array) -> jax.Array:
  """k-means++ seeding (Arthur & Vassilvitskii): each next seed drawn with probability
  proportional to its squared distance from the seeds so far. Returns seed indices."""
  first = jax.random.randint(key, (), 0, points.shape[0])
  distance = jnp.sum((points - points[first]) ** 2, -1)

  def pick(carry, k):
    distance = carry
    p = distance / jnp.maximum(jnp.sum(distance), 1e-30)
    chosen = jax.random.choice(jax.random.fold_in(key, k), points.shape[0], p=p)
    to_new = jnp.sum((points - points[chosen]) ** 2, -1)
    return jnp.minimum(distance, to_new), chosen

  _, rest = jax.lax.scan(pick, distance, jnp.arange(1, count))
  return jnp.concatenate([first[None], rest])


@functools.partial(jax.jit, static_argnums=(1, 3))
def kmeans(points: jax.Array, count: int, key: jax.Array, iterations: int = 20):
  """Lloyd's k-means from k-means++ seeds: (centers [count, D], assignment [N])."""
  centers = points[kmeans_plus_plus(points, count, key)]

  def assign(centers):
    return jnp.argmin(squared_distances(points, centers), axis=1)

  def step(centers, _):
    assignment = assign(centers)
    one_hot = jax.nn.one_hot(assignment, count, dtype=points.dtype)
    counts = one_hot.sum(0)
    means = (one_hot.T @ points) / jnp.maximum(counts, 1.0)[:, None]
    return jnp.where(counts[:, None] > 0, means, centers), None  # empty: keep its seed

  centers, _ = jax.lax.scan(step, centers, None, length=iterations)
  return centers, assign(centers)


@jax.jit
def nearest_center(points: jax.Array, centers: jax.Array) -> jax.Array:
  """[N] index of each point's nearest center."""
  return jnp.argmin(squared_distances(points, centers), axis=1)


def kmeans_on_sample(
  points: jax.Array, count: int, key: jax.Array, sample: int
) -> tuple[jax.Array, jax.Array]:
  """k-means fitted on `sample` seeded points (all when fewer), then every point assigned to
  its nearest center: (centers, assignment). For partitions that only need to be good, not
  optimal, this is several times cheaper than fitting all of a 100k pool."""
  n = points.shape[0]
  if sample >= n:
    return kmeans(points, count, key)
  chosen = jax.random.choice(jax.random.fold_in(key, 1), n, (sample,), replace=False)
  centers, _ = kmeans(points[chosen], count, key)
  return centers, nearest_center(points, centers)

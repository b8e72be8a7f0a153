"""Uncertainty of the current model: least confidence, margin and entropy of its class
probabilities; the `budget` most uncertain unlabelled examples are chosen."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool, QueryStrategy, top_unlabelled


@jax.jit
def least_confidence(probs: jax.Array) -> jax.Array:
  """1 - max_c p(c)."""
  return 1.0 - jnp.max(probs, axis=-1)


@jax.jit
def negative_margin(probs: jax.Array) -> jax.Array:
  """-(p(first) - p(second)): a small margin between the two likeliest classes is uncertain."""
  top_two = jax.lax.top_k(probs, 2)[0]
  return top_two[:, 1] - top_two[:, 0]


@jax.jit
def entropy(probs: jax.Array) -> jax.Array:
  """-sum_c p(c) log p(c) (0 log 0 = 0)."""
  return -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0), -1)


class _ScoreQuery(QueryStrategy):
  needs = ("probs",)
  score = staticmethod(entropy)

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    del key  # deterministic: ties go to the lower index
    return top_unlabelled(self.score(jnp.asarray(pool.probs, jnp.float32)), pool.labelled, budget)


@QUERY_STRATEGIES.register("least_confidence")
class LeastConfidenceQuery(_ScoreQuery):
  """The lowest top-class probability."""

  score = staticmethod(least_confidence)


@QUERY_STRATEGIES.register("margin")
class MarginQuery(_ScoreQuery):
  """The smallest gap between the two likeliest classes."""

  score = staticmethod(negative_margin)


@QUERY_STRATEGIES.register("entropy")
class EntropyQuery(_ScoreQuery):
  """The highest predictive entropy."""

  score = staticmethod(entropy)

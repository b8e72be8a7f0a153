"""The query-strategy contract: one stateless call from what is known about the pool to the
indices to label next.

A strategy is a class registered in `QUERY_STRATEGIES` (its constructor's keyword options are
its config options) that declares the pool fields it reads in `needs`:

  "features"   [N, D] encoder features of every pool example (no trained model needed)
  "probs"      [N, C] class probabilities of the current model
  "mc_probs"   [S, N, C] class probabilities under S Monte-Carlo dropout masks
  "labels"     [N] the hidden labels (only the oracle reference, stratified random, reads them)

`query(pool, budget, key)` returns `budget` distinct indices of unlabelled examples; the
loop checks `needs` against the pool before any work, and a strategy that needs no model
output (`cold_start`) can choose the very first labels.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax
import numpy as np

from ssl_jax.errors import ConfigError
from ssl_jax.registry import Registry

POOL_FIELDS = ("features", "probs", "mc_probs", "labels")


@dataclasses.dataclass(frozen=True)
class Pool:
  """What a strategy may know about the pool; `labelled[i]` says whether i has its label."""

  labelled: np.ndarray  # [N] bool
  features: np.ndarray | jax.Array | None = None
  probs: np.ndarray | jax.Array | None = None
  mc_probs: np.ndarray | jax.Array | None = None
  labels: np.ndarray | None = None
  num_classes: int | None = None  # the size of the label space, when the loop knows it

  @property
  def size(self) -> int:
    return int(self.labelled.shape[0])

  @property
  def num_unlabelled(self) -> int:
    return int(self.size - np.count_nonzero(self.labelled))


class QueryStrategy(abc.ABC):
  """Chooses which unlabelled pool examples to label next (see the module docstring)."""

  needs: ClassVar[tuple[str, ...]] = ()

  @classmethod
  def cold_start(cls) -> bool:
    """Whether it can choose without a trained model (before any label exists)."""
    return not {"probs", "mc_probs"} & set(cls.needs)

  @abc.abstractmethod
  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    """`budget` distinct unlabelled indices (the checks are `query`'s)."""

  def query(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    """Checks the pool and the budget, selects, and checks the choice."""
    check_pool(type(self), pool)
    if not 0 < budget <= pool.num_unlabelled:
      raise ConfigError(
        f"A query of {budget} examples from a pool with {pool.num_unlabelled} unlabelled ones; "
        "the budget must be between 1 and that."
      )
    chosen = np.asarray(self.select(pool, budget, key), np.int64)
    if chosen.shape != (budget,) or len(np.unique(chosen)) != budget or pool.labelled[chosen].any():
      raise AssertionError(f"{type(self).__name__} broke the query contract: {chosen}")
    return chosen


QUERY_STRATEGIES: Registry[type[QueryStrategy]] = Registry("query strategy")


def check_pool(strategy: type[QueryStrategy], pool: Pool) -> None:
  """A ConfigError naming the fields `strategy` needs that `pool` lacks."""
  missing = [name for name in strategy.needs if getattr(pool, name) is None]
  if missing:
    raise ConfigError(
      f"Query strategy {strategy.__name__} needs the pool's {missing}; "
      + (
        "it needs a trained model, so it cannot choose the first labels (cold start): start "
        "from an initial budget or use one of the cold-start strategies."
        if not strategy.cold_start()
        else "give the pool these fields."
      )
    )


def top_unlabelled(scores: np.ndarray | jax.Array, labelled: np.ndarray, budget: int) -> np.ndarray:
  """The `budget` unlabelled indices with the highest scores (ties: the lower index)."""
  scores = np.asarray(scores, np.float64).copy()
  scores[labelled] = -np.inf
  order = np.lexsort((np.arange(len(scores)), -scores))  # by score desc, then index asc
  return order[:budget]

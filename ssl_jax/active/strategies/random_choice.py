"""Random queries: the baseline every strategy is measured against, and the class-stratified
draw the label-budget tables use (an oracle reference: it reads the hidden labels)."""

from __future__ import annotations

import jax
import numpy as np

from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool, QueryStrategy


def _generator(key: jax.Array) -> np.random.Generator:
  return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


@QUERY_STRATEGIES.register("random")
class RandomQuery(QueryStrategy):
  """Uniformly random unlabelled examples."""

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    candidates = np.flatnonzero(~pool.labelled)
    return _generator(key).choice(candidates, budget, replace=False)


@QUERY_STRATEGIES.register("stratified_random")
class StratifiedRandomQuery(QueryStrategy):
  """Random examples with the classes as even as the budget allows (counting the labels
  already there): the draw of `data.label_budget`, as a reference, not a strategy a user
  could run without the labels."""

  needs = ("labels",)

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    rng = _generator(key)
    labels = np.asarray(pool.labels)
    classes = np.unique(labels)
    have = {c: int(np.count_nonzero(pool.labelled & (labels == c))) for c in classes}
    left = {
      c: list(rng.permutation(np.flatnonzero(~pool.labelled & (labels == c)))) for c in classes
    }
    chosen = []
    while len(chosen) < budget:
      open_classes = [c for c in classes if left[c]]
      fewest = min(have[c] for c in open_classes)
      tied = [c for c in open_classes if have[c] == fewest]
      c = tied[rng.integers(len(tied))]
      chosen.append(left[c].pop())
      have[c] += 1
    return np.asarray(chosen)

"""Discovering actively: query strategies for pool-based active learning (registered in
`query.QUERY_STRATEGIES`, one file per family)."""

from ssl_jax.discover import (  # noqa: F401  (registers the strategies)
  badge,
  bald,
  coreset,
  probcover,
  random_choice,
  typiclust,
  uncertainty,
)

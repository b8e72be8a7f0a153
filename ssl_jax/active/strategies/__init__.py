"""Query strategies for pool-based active learning, one file per family, registered in
`base.QUERY_STRATEGIES`. Importing this package registers them."""

from ssl_jax.active.strategies import (
  badge,
  bald,
  coreset,
  probcover,
  random_choice,
  typiclust,
  uncertainty,
)

"""Active learning, above the trainer: rounds of query -> reveal -> train -> evaluate over an
unlabelled pool. `schema` is its config, `rounds` the loop, `learners` / `fine_tune_learner`
what trains each round, `oracle` who answers, `strategies/` one file per query strategy.

Importing this package registers every learner, oracle and query strategy.
"""

from ssl_jax.active import fine_tune_learner, learners, oracle, strategies

"""Evaluators, registered in `ssl_jax.registry.EVALUATORS`; each maps an EvalContext and its
options to a results table {row: {column: value}}. Importing this package registers them."""

from ssl_jax.evals import (
  classification,
  knn,
  language_model,  # noqa: F401
  linear_probe,
  masked_lm,
  online_probe,
  pair_prediction,
  replaced_token,
  rewards,
  robustness,
  token_classification,
)
from ssl_jax.evals.context import EvalContext  # noqa: F401

"""Evaluators, registered in `ssl_jax.registry.EVALUATORS`; each maps an EvalContext and its
options to a results table {row: {column: value}}. Importing this package registers them."""

from ssl_jax.evals import fine_tune, knn, linear_probe, masked_lm, online_probe  # noqa: F401
from ssl_jax.evals.context import EvalContext  # noqa: F401

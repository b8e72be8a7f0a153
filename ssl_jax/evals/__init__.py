"""Evaluators, registered in `ssl_jax.registry.EVALUATORS`; each maps an EvalContext and its
options to a results table {row: {column: value}}. Importing this package registers them."""

from ssl_jax.evals import (fine_tune, knn, language_model, linear_probe, masked_lm,  # noqa: F401
                           online_probe, replaced_token)
from ssl_jax.evals.context import EvalContext  # noqa: F401

"""Test accuracy of the online linear probe (solo-learn's protocol).

The probe is a linear classifier trained in the same step as the pretext loss, on detached
features (`config.online_probe=True`); this evaluator only applies it to the test split. It is
cheap and tracks the offline probe closely, so long runs can read it at every evaluation.
"""

from __future__ import annotations

import numpy as np

from ssl_jax.capabilities import OnlineProbe
from ssl_jax.evals.context import EvalContext
from ssl_jax.registry import EVALUATORS


@EVALUATORS.register("online_probe", requires=(OnlineProbe,))
def online_probe(ctx: EvalContext, test_split: str = "test") -> dict[str, dict[str, float]]:
  """{task name: {"online probe acc": accuracy on `test_split`}}; labels -1 are skipped."""
  logits = ctx.apply(ctx.jit(ctx.task.probe_logits), ctx.variables, ctx.dataset.split(test_split))
  labels = ctx.labels(test_split)
  labelled = labels >= 0
  accuracy = np.mean(np.argmax(logits, -1)[labelled] == labels[labelled])
  return {ctx.name: {"online probe acc": float(accuracy)}}

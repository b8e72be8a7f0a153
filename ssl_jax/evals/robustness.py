"""Accuracy under attack: clean test accuracy beside accuracy on inputs attacked white-box
against the trained classifier itself, at one or more budgets. What an attack is depends on the
classifier (`capabilities.Attackable`): images in pixel space (FGSM or PGD under L-inf or L2),
text in embedding space (PGD under an L2 budget per example over its real tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from ssl_jax.capabilities import Attackable
from ssl_jax.evals.context import EvalContext
from ssl_jax.registry import EVALUATORS

_DEFAULTS = dict(eps=(0.1,), norm="linf", attack="pgd")


def _check(options: dict[str, Any], task_class: type) -> None:
  """The task class accepts each (attack, norm, eps) before any work."""
  options = {**_DEFAULTS, **options}
  for budget in options["eps"]:
    task_class.check_attack(options["attack"], options["norm"], float(budget))


@EVALUATORS.register("robustness", requires=(Attackable,), pairing=_check)
def robustness(
  ctx: EvalContext,
  eps: Sequence[float] = _DEFAULTS["eps"],
  norm: str = _DEFAULTS["norm"],
  steps: int = 10,
  step_size: float = 0.025,
  attack: str = _DEFAULTS["attack"],
  split: str = "test",
) -> dict[str, dict[str, float]]:
  """{run name: {"clean acc", "<attack> acc @ <norm> eps=<e>" per budget}} on `split`.

  PGD starts from a random point in the ball (one start; the key is fixed per batch, so the
  number is reproducible) and takes `steps` steps of `step_size`; the model is in eval mode.
  """
  task = ctx.task

  def batch_sums(params, model_state, batch, key):
    labels = batch["label"]
    columns = [task.logits(params, model_state, batch, None, False).argmax(-1) == labels]
    for budget in eps:
      attacked = task.attacked_logits(
        params,
        model_state,
        batch,
        key,
        attack=attack,
        norm=norm,
        eps=budget,
        steps=steps,
        step_size=step_size,
      )
      columns.append(attacked.argmax(-1) == labels)
    columns.append(jnp.ones_like(labels, bool))
    return jnp.stack(columns, axis=-1).astype(jnp.float32)

  *correct, count = ctx.split_sums(batch_sums, split, keep_labels=True)
  row = {"clean acc": correct[0] / count}
  for budget, hits in zip(eps, correct[1:]):
    row[task.attack_column(attack, norm, budget)] = hits / count
  return {ctx.name: row}

"""Accuracy under attack: clean test accuracy beside accuracy on PGD (or FGSM) images made
against the trained classifier itself (white box), at one or more budgets."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp

from ssl_jax.evals.context import EvalContext
from ssl_jax.registry import EVALUATORS, ConfigError
from ssl_jax.tasks.image_classification import (ATTACKS, adversarial_check,
                                                 attack_images)


@EVALUATORS.register("robustness")
def robustness(ctx: EvalContext, eps: Sequence[float] = (0.1,), norm: str = "linf",
               steps: int = 10, step_size: float = 0.025, attack: str = "pgd",
               split: str = "test") -> dict[str, dict[str, float]]:
  """{run name: {"clean acc", "<attack> acc @ eps=<e>" per budget}} on `split`.

  PGD starts from a random point in the ball (one start; the key is fixed per batch, so the
  number is reproducible) and takes `steps` steps of `step_size`; the model is in eval mode.
  """
  if ctx.dataset.modality != "image" or not hasattr(ctx.task, "logits"):
    raise ConfigError(f"Evaluator 'robustness' attacks an image classifier (task "
                      f"'image_classification'); {ctx.name!r} is not one.")
  if attack not in ATTACKS[1:]:
    raise ConfigError(f"Unknown robustness attack {attack!r}; valid: {list(ATTACKS[1:])}.")
  for budget in eps:
    adversarial_check(norm, budget)
  task = ctx.task

  def batch_sums(params, model_state, batch, key):
    def logits_of(images):
      return task.logits(params, model_state, {"image": images}, None, False)

    columns = [logits_of(batch["image"]).argmax(-1) == batch["label"]]
    for budget in eps:
      attacked = attack_images(logits_of, batch["image"], batch["label"], key, kind=attack,
                               eps=budget, norm=norm, steps=steps, step_size=step_size)
      columns.append(logits_of(attacked).argmax(-1) == batch["label"])
    columns.append(jnp.ones_like(batch["label"], bool))
    return jnp.stack(columns, axis=-1).astype(jnp.float32)

  *correct, count = ctx.split_sums(batch_sums, split, keep_labels=True)
  row = {"clean acc": correct[0] / count}
  for budget, hits in zip(eps, correct[1:]):
    row[f"{attack} acc @ {norm} eps={budget:g}"] = hits / count
  return {ctx.name: row}

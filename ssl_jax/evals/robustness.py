"""Accuracy under attack: clean test accuracy beside accuracy on PGD (or FGSM) inputs made
against the trained classifier itself (white box), at one or more budgets. Images are attacked
in pixel space; text (task "classification") in embedding space, with PGD under an L2 budget
per example over its real tokens."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from ssl_jax.evals.context import EvalContext
from ssl_jax.registry import EVALUATORS, ConfigError
from ssl_jax.tasks.image_classification import ATTACKS, adversarial_check, attack_images


@EVALUATORS.register("robustness")
def robustness(
  ctx: EvalContext,
  eps: Sequence[float] = (0.1,),
  norm: str = "linf",
  steps: int = 10,
  step_size: float = 0.025,
  attack: str = "pgd",
  split: str = "test",
) -> dict[str, dict[str, float]]:
  """{run name: {"clean acc", "<attack> acc @ eps=<e>" per budget}} on `split`.

  PGD starts from a random point in the ball (one start; the key is fixed per batch, so the
  number is reproducible) and takes `steps` steps of `step_size`; the model is in eval mode.
  """
  if not hasattr(ctx.task, "logits"):
    raise ConfigError(
      f"Evaluator 'robustness' attacks a classifier (task "
      f"'image_classification' or 'classification'); {ctx.name!r} is not one."
    )
  if ctx.dataset.modality == "text":
    return _text_robustness(ctx, eps, norm, steps, step_size, attack, split)
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
      attacked = attack_images(
        logits_of,
        batch["image"],
        batch["label"],
        key,
        kind=attack,
        eps=budget,
        norm=norm,
        steps=steps,
        step_size=step_size,
      )
      columns.append(logits_of(attacked).argmax(-1) == batch["label"])
    columns.append(jnp.ones_like(batch["label"], bool))
    return jnp.stack(columns, axis=-1).astype(jnp.float32)

  *correct, count = ctx.split_sums(batch_sums, split, keep_labels=True)
  row = {"clean acc": correct[0] / count}
  for budget, hits in zip(eps, correct[1:]):
    row[f"{attack} acc @ {norm} eps={budget:g}"] = hits / count
  return {ctx.name: row}


def _text_robustness(
  ctx: EvalContext,
  eps: Sequence[float],
  norm: str,
  steps: int,
  step_size: float,
  attack: str,
  split: str,
) -> dict[str, dict[str, float]]:
  if attack != "pgd" or norm != "l2":
    raise ConfigError(
      f"Text is attacked in embedding space with attack='pgd', norm='l2'; got "
      f"attack={attack!r}, norm={norm!r}."
    )
  for budget in eps:
    adversarial_check(norm, budget)
  task = ctx.task

  def batch_sums(params, model_state, batch, key):
    tokens, labels = batch["tokens"], batch["label"]
    clean = task.logits(params, model_state, batch, None, False)
    columns = [clean.argmax(-1) == labels]
    for budget in eps:
      attacked = task.attacked_logits(
        params, model_state, tokens, labels, key, budget, steps, step_size
      )
      columns.append(attacked.argmax(-1) == labels)
    columns.append(jnp.ones_like(labels, bool))
    return jnp.stack(columns, axis=-1).astype(jnp.float32)

  *correct, count = ctx.split_sums(batch_sums, split, keep_labels=True)
  row = {"clean acc": correct[0] / count}
  for budget, hits in zip(eps, correct[1:]):
    row[f"embedding pgd acc @ l2 eps={budget:g}"] = hits / count
  return {ctx.name: row}

"""Accuracy of a fine-tuned classifier on its held-out splits, beside the majority class."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from ssl_jax.capabilities import Classifier
from ssl_jax.evals.context import EvalContext
from ssl_jax.registry import EVALUATORS


@EVALUATORS.register("classification", requires=(Classifier,))
def classification(
  ctx: EvalContext, splits: Sequence[str] = ("validation", "test")
) -> dict[str, dict[str, float]]:
  """{row: {"<split> acc"}} for the trained classifier (with its trainable parameter count)
  and for always answering the most frequent training class."""
  majority = int(
    np.bincount(np.asarray(ctx.dataset.split(ctx.dataset.train_split)["label"])).argmax()
  )

  def batch_sums(params, model_state, batch, key):
    del key
    logits = ctx.task.logits(params, model_state, batch, None, train=False)
    return jnp.stack(
      [
        logits.argmax(-1) == batch["label"],
        batch["label"] == majority,
        jnp.ones_like(batch["label"]),
      ],
      axis=-1,
    ).astype(jnp.float32)

  trained, baseline = {}, {}
  for split in splits:
    if split not in ctx.dataset.splits:
      continue
    correct, majority_correct, count = ctx.split_sums(batch_sums, split, keep_labels=True)
    trained[f"{split} acc"] = correct / count
    baseline[f"{split} acc"] = majority_correct / count
  trained["trainable params"] = ctx.task.trainable_parameters(ctx.variables[0])
  return {ctx.name: trained, "majority class": baseline}

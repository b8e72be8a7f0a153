"""Held-out next-sentence / sentence-order accuracy, beside chance (50%) and the majority
class of the held-out rows (NSP on short documents is not balanced: a one-sentence chunk
always gets a random B, as in BERT)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ssl_jax.capabilities import PairPredictor
from ssl_jax.evals.context import EvalContext
from ssl_jax.losses import token_nll
from ssl_jax.registry import EVALUATORS


@EVALUATORS.register("pair_prediction", requires=(PairPredictor,))
def pair_prediction(ctx: EvalContext, split: str = "test") -> dict[str, dict[str, float]]:
  """Accuracy and cross entropy of the pair head on `split` (masked as in training, with a
  fixed key per batch), and the two baselines as their own rows."""
  task = ctx.task
  labels = np.asarray(ctx.dataset.split(split)["pair_label"])
  objective = ctx.dataset.info.get("pair_objective", "pair")

  def batch_sums(params, model_state, batch, key):
    logits = task.pair_predictions(params, model_state, batch, key)
    label = batch["pair_label"]
    correct = (logits.argmax(-1) == label).astype(jnp.float32)
    return jnp.stack([correct, token_nll(logits, label)], axis=-1)

  correct, nll = ctx.split_sums(batch_sums, split)
  majority = max(labels.mean(), 1 - labels.mean())
  return {
    ctx.name: {f"{objective} acc": correct / len(labels), f"{objective} loss": nll / len(labels)},
    "chance": {f"{objective} acc": 0.5},
    "majority class": {f"{objective} acc": float(majority)},
  }

"""Held-out masked-token loss and accuracy, beside the most-frequent-token (unigram) baseline."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.evals.context import EvalContext
from ssl_jax.registry import EVALUATORS, ConfigError


def most_frequent_token(tokens: np.ndarray, special_ids: tuple[int, ...], vocab_size: int) -> int:
  counts = np.bincount(tokens.ravel(), minlength=vocab_size)
  counts[list(special_ids)] = 0
  return int(np.argmax(counts))


@EVALUATORS.register("masked_lm")
def masked_lm(ctx: EvalContext, split: str = "test") -> dict[str, dict[str, float]]:
  """Masks the held-out rows with the task's own masking (a fixed key per batch, so every
  evaluation sees the same masks) and reports loss/accuracy at the masked positions."""
  task = ctx.task
  if not hasattr(task, "masked_predictions"):
    raise ConfigError(f"Evaluator 'masked_lm' needs a masked-LM task; {ctx.name!r} is not one.")
  info = ctx.dataset.info
  unigram = most_frequent_token(
    ctx.dataset.split(ctx.dataset.train_split)["tokens"],
    tuple(info["special_ids"]),
    info["vocab_size"],
  )

  def batch_sums(params, model_state, batch, key):
    logits, targets, weights = task.masked_predictions(params, model_state, batch, key, train=False)
    log_probs = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    per_row = lambda x: (x * weights).sum(-1)
    return jnp.stack(
      [
        per_row(nll),
        per_row(logits.argmax(-1) == targets),
        per_row(targets == unigram),
        weights.sum(-1),
      ],
      axis=-1,
    )

  nll, correct, unigram_correct, count = ctx.split_sums(batch_sums, split)
  return {
    ctx.name: {"masked acc": correct / count, "masked loss": nll / count},
    "unigram (most frequent token)": {"masked acc": unigram_correct / count},
  }

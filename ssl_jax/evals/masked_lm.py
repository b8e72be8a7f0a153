"""Held-out masked-token loss and accuracy, beside the most-frequent-token (unigram) baseline."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ssl_jax.capabilities import MaskedTokenPredictor
from ssl_jax.evals.context import EvalContext
from ssl_jax.losses import per_row_sums, token_nll
from ssl_jax.registry import EVALUATORS


def most_frequent_token(tokens: np.ndarray, special_ids: tuple[int, ...], vocab_size: int) -> int:
  counts = np.bincount(tokens.ravel(), minlength=vocab_size)
  counts[list(special_ids)] = 0
  return int(np.argmax(counts))


@EVALUATORS.register("masked_lm", requires=(MaskedTokenPredictor,))
def masked_lm(ctx: EvalContext, split: str = "test") -> dict[str, dict[str, float]]:
  """Masks the held-out rows with the task's own masking (a fixed key per batch, so every
  evaluation sees the same masks) and reports loss/accuracy at the masked positions."""
  task = ctx.task
  info = ctx.dataset.info
  unigram = most_frequent_token(
    ctx.dataset.split(ctx.dataset.train_split)["tokens"],
    tuple(info["special_ids"]),
    info["vocab_size"],
  )

  def batch_sums(params, model_state, batch, key):
    logits, targets, weights = task.masked_predictions(params, model_state, batch, key, train=False)
    return jnp.stack(
      [
        per_row_sums(token_nll(logits, targets), weights),
        per_row_sums(logits.argmax(-1) == targets, weights),
        per_row_sums(targets == unigram, weights),
        weights.sum(-1),
      ],
      axis=-1,
    )

  nll, correct, unigram_correct, count = ctx.split_sums(batch_sums, split)
  return {
    ctx.name: {"masked acc": correct / count, "masked loss": nll / count},
    "unigram (most frequent token)": {"masked acc": unigram_correct / count},
  }

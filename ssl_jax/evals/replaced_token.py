"""ELECTRA evaluation: the generator's held-out masked-token accuracy and the discriminator's
replaced-token detection, beside the baselines that know nothing (most frequent token; "every
token is original")."""

from __future__ import annotations

import jax.numpy as jnp

from ssl_jax.capabilities import ReplacedTokenDetector
from ssl_jax.evals.context import EvalContext
from ssl_jax.evals.masked_lm import most_frequent_token
from ssl_jax.losses import per_row_sums, token_nll
from ssl_jax.registry import EVALUATORS


@EVALUATORS.register("replaced_token_detection", requires=(ReplacedTokenDetector,))
def replaced_token_detection(ctx: EvalContext, split: str = "test") -> dict[str, dict[str, float]]:
  """Corrupts `split` as in training (a fixed key per batch) and reports
  generator: masked acc, masked loss; discriminator: accuracy over real tokens, and precision
  and recall of the "replaced" label; with the two baselines as their own rows."""
  task = ctx.task
  info = ctx.dataset.info
  unigram = most_frequent_token(
    ctx.dataset.split(ctx.dataset.train_split)["tokens"],
    tuple(info["special_ids"]),
    info["vocab_size"],
  )

  def batch_sums(params, model_state, batch, key):
    out = task.replaced_token_predictions(params, model_state, batch, key, train=False)
    weights, token_weights, labels = out["weights"], out["token_weights"], out["labels"]
    logits = out["generator_logits"]
    nll = token_nll(logits, out["targets"])
    said_replaced = (out["discriminator_logits"] > 0) * token_weights
    per_row = per_row_sums
    return jnp.stack(
      [
        per_row(nll, weights),
        per_row(logits.argmax(-1) == out["targets"], weights),
        per_row(out["targets"] == unigram, weights),
        weights.sum(-1),
        per_row(said_replaced == labels, token_weights),
        token_weights.sum(-1),
        per_row(said_replaced * labels, token_weights),
        said_replaced.sum(-1),
        per_row(labels, token_weights),
      ],
      axis=-1,
    )

  sums = ctx.split_sums(batch_sums, split)
  nll, correct, unigram_correct, masked, detected, tokens, true_pos, flagged, replaced = sums
  return {
    f"{ctx.name} generator": {"masked acc": correct / masked, "masked loss": nll / masked},
    "unigram (most frequent token)": {"masked acc": unigram_correct / masked},
    f"{ctx.name} discriminator": {
      "detection acc": detected / tokens,
      "replaced precision": true_pos / max(flagged, 1.0),
      "replaced recall": true_pos / max(replaced, 1.0),
    },
    "all tokens called original": {
      "detection acc": 1.0 - replaced / tokens,
      "replaced recall": 0.0,
    },
  }

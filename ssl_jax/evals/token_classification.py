"""Held-out tagging scores per word (its first piece): entity-level precision / recall / F1 in
the conlleval and strict IOB2 modes, word accuracy, and the conlleval F1 of each entity type
of the training tags (seqeval's per-type report), beside the all-"O" baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssl_jax.capabilities import TokenLabeller
from ssl_jax.evals.context import EvalContext
from ssl_jax.evals.entity_f1 import entity_scores
from ssl_jax.registry import EVALUATORS


def word_tags(
  tags: np.ndarray, first_piece: np.ndarray, names: list[str], sentence: np.ndarray | None = None
) -> list[list[str]]:
  """Each sentence's tags at its words' first pieces, as tag names: the rows (windows) of one
  sentence (`sentence`, consecutive) joined in order; one sentence per row without it."""
  rows = [[names[t] for t in row[first]] for row, first in zip(tags, first_piece)]
  if sentence is None:
    return rows
  joined: list[list[str]] = []
  for i, words in enumerate(rows):
    if i and sentence[i] == sentence[i - 1]:
      joined[-1].extend(words)
    else:
      joined.append(list(words))
  return joined


def tagging_scores(
  true: list[list[str]], predicted: list[list[str]], kinds: Sequence[str] = ()
) -> dict[str, float]:
  """The micro scores, then "F1 <type>" (conlleval) for each of `kinds`."""
  by_type = entity_scores(true, predicted, "conlleval")
  lenient = by_type["all"]
  strict = entity_scores(true, predicted, "strict")["all"]
  words = [(a, b) for t, p in zip(true, predicted) for a, b in zip(t, p)]
  return {
    "entity F1 (conlleval)": lenient["f1"],
    "precision (conlleval)": lenient["precision"],
    "recall (conlleval)": lenient["recall"],
    "entity F1 (strict)": strict["f1"],
    "word acc": sum(a == b for a, b in words) / max(len(words), 1),
    **{f"F1 {kind}": by_type.get(kind, {"f1": 0.0})["f1"] for kind in kinds},
  }


@EVALUATORS.register("token_classification", requires=(TokenLabeller,))
def token_classification(ctx: EvalContext, split: str = "test") -> dict[str, dict[str, float]]:
  """Tags `split` with the trained model and scores its words."""
  task = ctx.task
  rows = ctx.dataset.split(split)
  names = list(ctx.dataset.info["tag_names"])
  predicted = ctx.apply(task.tag_predictions, ctx.variables, {"tokens": rows["tokens"]})
  sentence = rows.get("sentence")
  true = word_tags(rows["tags"], rows["first_piece"], names, sentence)
  outside = [["O"] * len(sentence) for sentence in true]
  kinds = list(ctx.dataset.info.get("entity_types", ()))
  return {
    ctx.name: tagging_scores(
      true, word_tags(predicted, rows["first_piece"], names, sentence), kinds
    ),
    'all "O"': tagging_scores(true, outside, kinds),
  }

"""Entity-level precision, recall and F1 of tag sequences, as seqeval computes them.

Two ways of reading entities out of tags:

  conlleval (lenient, seqeval's default): the chunking of the CoNLL-2000 `conlleval` script.
    An entity starts at a B- (or S-) tag, and also at an I- (or E-) tag whose type differs from
    the previous tag's or that follows O or the end of an entity; it ends where the next one
    starts or at O. So "I-PER I-PER" is one PER entity, and "B-PER I-LOC" is two.
  strict (IOB2, seqeval's `mode="strict", scheme=IOB2`): an entity is exactly a B-X followed
    by zero or more I-X. An I- tag that does not continue a B- (or I-) of its own type starts
    nothing: "I-PER I-PER" holds no entity, and "B-PER I-LOC" holds PER alone.

Sentences are read separately (an entity never spans two), entities are (type, start, end)
and must match exactly, and the scores are micro-averaged over all entities (per type too).
Precision with no predicted entity, and recall with no true one, are 0 (seqeval's default).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from ssl_jax.data.token_tags import split_tag

MODES = ("conlleval", "strict")
Entity = tuple[str, int, int]  # (type, first token, last token), both inclusive


def _ends(prev: str, prev_kind: str, prefix: str, kind: str) -> bool:
  """conlleval's end_of_chunk: does the chunk of the previous tag end before this one?"""
  if prev in ("E", "S"):
    return True
  if prev in ("B", "I") and prefix in ("B", "S", "O"):
    return True
  return prev != "O" and prev_kind != kind


def _starts(prev: str, prev_kind: str, prefix: str, kind: str) -> bool:
  """conlleval's start_of_chunk: does a chunk start at this tag?"""
  if prefix in ("B", "S"):
    return True
  if prefix in ("E", "I") and prev in ("E", "S", "O"):
    return True
  return prefix != "O" and prev_kind != kind


def lenient_entities(tags: Sequence[str]) -> list[Entity]:
  """The entities of one sentence under conlleval's chunking."""
  entities = []
  prev, prev_kind, start = "O", "", 0
  for i, tag in enumerate([*tags, "O"]):
    prefix, kind = split_tag(tag)
    if _ends(prev, prev_kind, prefix, kind):
      entities.append((prev_kind, start, i - 1))
    if _starts(prev, prev_kind, prefix, kind):
      start = i
    prev, prev_kind = prefix, kind
  return entities


def strict_entities(tags: Sequence[str]) -> list[Entity]:
  """The entities of one sentence under strict IOB2: B-X (I-X)*; anything else starts none."""
  entities = []
  kind, start = None, 0
  for i, tag in enumerate([*tags, "O"]):
    prefix, this_kind = split_tag(tag)
    if prefix not in ("B", "I", "O"):
      raise ValueError(f"Tag {tag!r} is not IOB2 (strict mode reads B-, I- and O only).")
    if kind is not None and not (prefix == "I" and this_kind == kind):
      entities.append((kind, start, i - 1))
      kind = None
    if prefix == "B":
      kind, start = this_kind, i
  return entities


def entity_scores(
  true: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], mode: str = "conlleval"
) -> dict[str, dict[str, float]]:
  """{"all" and each type: {"precision", "recall", "f1", "support"}} over the sentences."""
  if mode not in MODES:
    raise ValueError(f"Unknown entity mode {mode!r}; valid: {list(MODES)}.")
  if len(true) != len(predicted) or any(len(t) != len(p) for t, p in zip(true, predicted)):
    raise ValueError("true and predicted tags must have the same sentences and lengths.")
  read = lenient_entities if mode == "conlleval" else strict_entities
  counts = collections.defaultdict(lambda: [0, 0, 0])  # correct, predicted, true
  for sentence, (t, p) in enumerate(zip(true, predicted)):
    true_set = {(sentence, *e) for e in read(t)}
    pred_set = {(sentence, *e) for e in read(p)}
    for group, key in ((true_set & pred_set, 0), (pred_set, 1), (true_set, 2)):
      for entity in group:
        counts[entity[1]][key] += 1
        counts["all"][key] += 1
  counts["all"]  # present even without entities
  return {kind: _scores(*values) for kind, values in sorted(counts.items())}


def _scores(correct: int, predicted: int, true: int) -> dict[str, float]:
  precision = correct / predicted if predicted else 0.0
  recall = correct / true if true else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": precision, "recall": recall, "f1": f1, "support": float(true)}


def token_accuracy(true: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
  """The fraction of tokens whose tag is right (O included)."""
  pairs = [(a, b) for t, p in zip(true, predicted) for a, b in zip(t, p)]
  return sum(a == b for a, b in pairs) / max(len(pairs), 1)

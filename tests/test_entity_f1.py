"""Entity-level precision / recall / F1 in the conlleval and strict IOB2 modes: hand-made tag
sequences (including those where the modes differ), and agreement with seqeval itself on
random, often ill-formed, tag sequences."""

import numpy as np
import pytest
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

from ssl_jax.evals.entity_f1 import (
  entity_scores,
  lenient_entities,
  strict_entities,
  token_accuracy,
)


def test_well_formed_tags_read_the_same_in_both_modes():
  tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O"]
  expected = [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 5)]
  assert lenient_entities(tags) == strict_entities(tags) == expected


def test_where_the_modes_differ():
  # An I- without a B-: conlleval starts an entity there, strict IOB2 starts none.
  assert lenient_entities(["O", "I-PER", "I-PER"]) == [("PER", 1, 2)]
  assert strict_entities(["O", "I-PER", "I-PER"]) == []
  # A type change inside: two entities in conlleval, only the B-'s in strict.
  assert lenient_entities(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]
  assert strict_entities(["B-PER", "I-LOC"]) == [("PER", 0, 0)]

  true = [["B-PER", "I-PER", "O", "B-LOC"]]
  predicted = [["I-PER", "I-PER", "O", "B-LOC"]]  # PER found, but without its B-
  lenient = entity_scores(true, predicted, "conlleval")["all"]
  strict = entity_scores(true, predicted, "strict")["all"]
  assert (lenient["precision"], lenient["recall"], lenient["f1"]) == (1.0, 1.0, 1.0)
  # strict: 1 of 1 predicted entity right (LOC), 1 of 2 true found.
  assert (strict["precision"], strict["recall"]) == (1.0, 0.5)
  assert strict["f1"] == pytest.approx(2 / 3)


def test_scores_by_hand():
  true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
  predicted = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-PER"]]
  scores = entity_scores(true, predicted)
  # true: PER(0-1), LOC, ORG; predicted: PER(0-0), LOC, ORG, PER: 2 right (LOC, ORG).
  assert scores["all"]["precision"] == pytest.approx(2 / 4)
  assert scores["all"]["recall"] == pytest.approx(2 / 3)
  assert scores["all"]["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
  assert scores["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1.0}
  assert scores["ORG"]["f1"] == 1.0
  # Entities never span sentences: the sentence boundary ends "I-" runs.
  assert token_accuracy(true, predicted) == pytest.approx(4 / 6)


def test_no_entities_scores_zero_not_nan():
  assert entity_scores([["O", "O"]], [["O", "O"]])["all"]["f1"] == 0.0


def test_bad_tags_and_shapes_are_refused():
  with pytest.raises(ValueError, match="'X-PER'"):
    entity_scores([["X-PER"]], [["O"]])
  with pytest.raises(ValueError, match="same sentences"):
    entity_scores([["O", "O"]], [["O"]])
  with pytest.raises(ValueError, match="Unknown entity mode 'iob'"):
    entity_scores([["O"]], [["O"]], "iob")


def _seqeval(true, predicted, strict):
  options = dict(mode="strict", scheme=IOB2) if strict else {}
  return classification_report(true, predicted, output_dict=True, zero_division=0, **options)


@pytest.mark.parametrize("mode", ["conlleval", "strict"])
def test_agrees_with_seqeval_on_random_tags(mode):
  rng = np.random.default_rng(0)
  tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
  for trial in range(200):
    lengths = rng.integers(1, 12, rng.integers(1, 5))
    true = [list(rng.choice(tags, n)) for n in lengths]
    predicted = [list(rng.choice(tags, n)) for n in lengths]
    ours = entity_scores(true, predicted, mode)
    theirs = _seqeval(true, predicted, mode == "strict")
    if not ours["all"]["support"] and not ours["all"]["f1"]:
      continue
    reference = theirs["micro avg"]
    for key in ("precision", "recall", "f1-score"):
      assert ours["all"][key.removesuffix("-score")] == pytest.approx(reference[key]), trial
    for kind in ("PER", "LOC", "ORG"):
      if kind in theirs:
        assert ours[kind]["f1"] == pytest.approx(theirs[kind]["f1-score"]), (trial, kind)

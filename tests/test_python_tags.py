"""The offline tagging task built from the embedded Python text: markup to BIO tags by the
documented rules, test sentences only from held-out documents, and label budgets of k
sentences per entity type."""

import numpy as np
import pytest

from ssl_jax.data import python_tags as pt
from ssl_jax.data.label_budget import apply_label_budget
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import is_test_document
from ssl_jax.data.token_tags import sentence_groups
from ssl_jax.errors import UserError


def tags_of(sentence, parameters=(), topic=False):
  pattern = pt._TOPIC_SPAN if topic else pt._DOCSTRING_SPAN
  words, tags = pt.tag_sentence(sentence, pattern, parameters)
  return list(zip(words, tags))


def test_markup_becomes_typed_spans_without_the_marks():
  got = tags_of(
    "Call :func:`os.path.join` on ``path`` with `sep`, then :class:`~collections.OrderedDict`.",
    parameters=("path",),
  )
  assert got == [
    ("Call", "O"),
    ("os.path.join", "B-FUNC"),
    ("on", "O"),
    ("path", "B-PARAM"),
    ("with", "O"),
    ("sep", "B-CODE"),  # not an argument of this function
    (",", "O"),
    ("then", "O"),
    ("OrderedDict", "B-CLASS"),  # ~ shows the last part only
    (".", "O"),
  ]
  # Multi-word spans are B- then I-; unmarked calls are FUNC; quoted identifiers are spans.
  got = tags_of("Use ``x = None`` or 'json' and read() a ValueError.")
  assert got == [
    ("Use", "O"),
    ("x", "B-CODE"),
    ("=", "I-CODE"),
    ("None", "I-CODE"),
    ("or", "O"),
    ("json", "B-MODULE"),
    ("and", "O"),
    ("read()", "B-FUNC"),
    ("a", "O"),
    ("ValueError", "O"),  # unmarked: what the authors did not mark stays O
    (".", "O"),
  ]
  # Topics mark inline literals with double quotes; a role's title is what it shows.
  assert tags_of('The "if" statement uses "print()".', topic=True)[1] == ("if", "B-CODE")
  assert tags_of('The "if" statement uses "print()".', topic=True)[4] == ("print()", "B-FUNC")
  assert tags_of("See :mod:`the json module <json>`.")[1:4] == [
    ("the", "B-MODULE"),
    ("json", "I-MODULE"),
    ("module", "I-MODULE"),
  ]


def test_type_rules_in_order():
  assert pt.entity_type("Path", "meth", ()) == "FUNC"  # a role wins
  assert pt.entity_type("spam()", "", ()) == "FUNC"
  assert pt.entity_type("io.StringIO", "", ()) == "CLASS"
  assert pt.entity_type("os.path", "", ()) == "MODULE"
  assert pt.entity_type("maxsize", "", ("maxsize",)) == "PARAM"
  assert pt.entity_type("maxsize", "", ()) == "CODE"
  assert pt.entity_type("a + b", "", ("a",)) == "CODE"


def test_code_blocks_and_entity_free_sentences_are_dropped():
  text = (
    "Return the ``value`` now.\n\n    >>> value = 1\n    spam(value)\n\nNothing marked here at all."
  )
  rows = list(pt.document_sentences(text, pt._DOCSTRING_SPAN, ()))
  assert rows == [(["Return", "the", "value", "now", "."], ["O", "O", "B-CODE", "O", "O"])]


def test_test_sentences_come_only_from_held_out_documents():
  """Every sentence of a document lands in the document's `python_text` split."""
  held_out = pt.python_tagged_sentences(10)
  docs = [(d.name, d.text, d.parameters) for d in pt.read_stdlib_docstrings() if "``" in d.text][
    :300
  ]
  seen_test = seen_train = 0
  test_rows, train_rows = set(map(repr, held_out["test"])), set(map(repr, held_out["train"]))
  for name, text, parameters in docs:
    parameters = tuple(p for p in parameters if p not in ("self", "cls"))
    for row in pt.document_sentences(text, pt._DOCSTRING_SPAN, parameters):
      if is_test_document(name, 10):
        assert repr(row) in test_rows
        seen_test += 1
      elif repr(row) not in test_rows:  # a sentence repeated in a test document may be both
        assert repr(row) in train_rows
        seen_train += 1
  assert seen_test > 5 and seen_train > 100
  counts = pt.python_tag_counts(held_out["train"])
  assert counts["sentences"] > 2500 and all(counts[kind] >= 50 for kind in pt.ENTITY_TYPES)


def test_budget_keeps_k_sentences_of_every_entity_type():
  sentences = [
    (["a"], ["B-X"]),
    (["a", "b"], ["B-X", "B-Y"]),  # Y is rarer: grouped as Y
    (["c"], ["O"]),  # no entity: never drawn
    (["a"], ["B-X"]),
    (["b"], ["B-Y"]),
    (["a"], ["B-X"]),
  ]
  groups = sentence_groups(sentences, ["X", "Y"], {"X": 4, "Y": 2})
  np.testing.assert_array_equal(groups, [0, 1, -1, 0, 1, 0])
  dataset = Dataset(
    splits={
      "train": {"tokens": np.arange(6)[:, None], "tag_group": groups},
      "test": {"tokens": np.zeros((1, 1)), "tag_group": np.zeros(1, np.int32)},
    },
    modality="text",
    info={"budget_column": "tag_group", "num_classes": 5},
  )
  for draw in range(5):
    kept = apply_label_budget(dataset, per_class=2, draw=draw).splits["train"]
    chosen = set(kept["tokens"][:, 0].tolist())
    assert len(chosen) == 4 and 2 not in chosen
    assert {1, 4} <= chosen  # both Y sentences: the only two
    assert len(kept["tokens"]) == 6  # repeated to the split's size
  with pytest.raises(UserError, match="whole-row labels"):
    apply_label_budget(dataset, indices=[0, 1], labels=[1, 0])
  with pytest.raises(UserError, match="class 1 has only 2"):
    apply_label_budget(dataset, per_class=3)

"""Word tags on sentencepiece pieces (Hugging Face run_ner's alignment: the first piece of a
word carries its tag, later pieces are ignored, or with label_all_tokens carry it with B- made
I-), the tag vocabulary, and the CoNLL reader's errors."""

import numpy as np
import pytest

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.tag_windows import sentence_windows
from ssl_jax.data.token_tags import IGNORE, align_tags, read_conll, tag_vocabulary
from ssl_jax.errors import DataError
from ssl_jax.evals.token_classification import word_tags

WORDS = "the logging module writes records to handlers configured by basicConfig".split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tok") / "t.model")
  lines = [" ".join(WORDS)] * 20 + ["the module the records the handlers"] * 20
  return tok.train_tokenizer(lines, path, 30)


def test_first_piece_carries_the_tag_and_later_pieces_are_ignored(tokenizer):
  words = ["the", "basicConfig", "writes", "handlers"]
  tags = ["O", "B-API", "O", "B-OBJ"]
  names = tag_vocabulary([(words, tags)])
  assert names == ["O", "B-API", "I-API", "B-OBJ", "I-OBJ"]
  pieces = tokenizer.encode(words)
  assert len(pieces[1]) >= 2  # basicConfig is several pieces in a 30-piece vocabulary
  rows = align_tags(tokenizer, [(words, tags)], names, 32)
  flat = [p for word in pieces for p in word]
  n = len(flat)
  np.testing.assert_array_equal(rows["tokens"][0, : n + 2], [tok.CLS_ID, *flat, tok.SEP_ID])
  expected = [IGNORE]
  for word, tag in zip(pieces, tags):
    expected += [names.index(tag)] + [IGNORE] * (len(word) - 1)
  np.testing.assert_array_equal(rows["tags"][0, : n + 1], expected)
  assert (rows["tags"][0, n + 1 :] == IGNORE).all()
  assert rows["first_piece"][0].sum() == 4

  # label_all_tokens: later pieces of B-API carry I-API.
  rows = align_tags(tokenizer, [(words, tags)], names, 32, label_all_tokens=True)
  start = 1 + len(pieces[0])
  np.testing.assert_array_equal(
    rows["tags"][0, start : start + len(pieces[1])],
    [names.index("B-API")] + [names.index("I-API")] * (len(pieces[1]) - 1),
  )
  assert rows["first_piece"][0].sum() == 4  # scores stay per word


def test_windows_by_hand():
  # Ten one-piece words, rows of 4, overlap 1: windows start 3 and 6 (one word back); each
  # overlap word is owned by the window where it sits nearer the middle.
  assert sentence_windows([1] * 10, 4, 1) == [(0, 4, 0, 4), (3, 7, 4, 7), (6, 10, 7, 10)]
  assert sentence_windows([2, 3, 1], 6, 2) == [(0, 3, 0, 3)]  # fits: one window
  # A window always moves on, even when the overlap would take it back to its own start.
  assert sentence_windows([3, 3, 3], 3, 5) == [(0, 1, 0, 1), (1, 2, 1, 2), (2, 3, 2, 3)]


def test_every_word_is_owned_once_and_windows_fit():
  rng = np.random.default_rng(0)
  for _ in range(300):
    room = int(rng.integers(1, 12))
    lengths = rng.integers(1, room + 1, int(rng.integers(1, 40))).tolist()
    windows = sentence_windows(lengths, room, int(rng.integers(0, room + 2)))
    owned = [w for _, _, s, e in windows for w in range(s, e)]
    assert owned == list(range(len(lengths)))
    for start, end, owned_start, owned_end in windows:
      assert start <= owned_start <= owned_end <= end and sum(lengths[start:end]) <= room
    assert all(a[0] < b[0] for a, b in zip(windows, windows[1:]))


def test_long_sentences_become_windows_that_score_every_word(tokenizer):
  words = (WORDS * 3)[:30]
  tags = [("B-API" if w == "basicConfig" else "O") for w in words]
  names = tag_vocabulary([(words, tags)])
  short = (["the", "module"], ["O", "O"])
  rows = align_tags(tokenizer, [short, (words, tags)], names, 12, overlap=3)
  assert (
    rows["sentence"][0] == 0 and (rows["sentence"][1:] == 1).all() and len(rows["sentence"]) > 3
  )
  assert (rows["tokens"][:, 0] == tok.CLS_ID).all()
  # Joined by sentence, the owned first pieces give back every word's tag, in order.
  joined = word_tags(rows["tags"], rows["first_piece"], names, rows["sentence"])
  assert joined == [short[1], tags]
  # Training rows tag every word they hold, owned or not.
  tagged = (rows["tags"] != IGNORE).sum(1)
  assert (tagged >= rows["first_piece"].sum(1)).all() and tagged[1:].sum() > len(words)
  # A word longer than the row keeps its first pieces, and its first piece is scored.
  long_word = ["basicConfig" * 4]
  size = len(tokenizer.encode(long_word)[0])
  rows = align_tags(tokenizer, [(long_word, ["B-API"])], names, 6)
  assert size > 4 and rows["first_piece"][0].sum() == 1 and rows["tokens"][0, 5] == tok.SEP_ID


def test_conll_reader(tmp_path):
  path = tmp_path / "train.txt"
  path.write_text(
    "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter B-PER\nBlackburn I-PER\n"
  )
  assert read_conll(str(path)) == [
    (["EU", "rejects"], ["B-ORG", "O"]),
    (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
  ]
  path.write_text("EU B-ORG\nrejects\n")
  with pytest.raises(DataError, match=r"train.txt:2: 'rejects' has one column"):
    read_conll(str(path))
  path.write_text("EU ORG\n")
  with pytest.raises(DataError, match=r"train.txt:1: tag 'ORG' is not O or B-"):
    read_conll(str(path))
  path.write_text("\n\n")
  with pytest.raises(DataError, match="no tagged sentence"):
    read_conll(str(path))


def test_unknown_test_tags_are_named(tokenizer):
  with pytest.raises(DataError, match=r"\['B-LOC'\] are not in the training tags"):
    align_tags(tokenizer, [(["the"], ["B-LOC"])], ["O", "B-PER", "I-PER"], 8)

"""Word tags on sentencepiece pieces (Hugging Face run_ner's alignment: the first piece of a
word carries its tag, later pieces are ignored, or with label_all_tokens carry it with B- made
I-), the tag vocabulary, and the CoNLL reader's errors."""

import numpy as np
import pytest

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.token_tags import IGNORE, align_tags, read_conll, tag_vocabulary
from ssl_jax.errors import DataError

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


def test_long_sentences_lose_whole_words(tokenizer):
  words, tags = ["basicConfig"] * 10, ["B-API"] * 10
  names = tag_vocabulary([(words, tags)])
  size = len(tokenizer.encode(["basicConfig"])[0])
  rows = align_tags(tokenizer, [(words, tags)], names, 2 + 3 * size + 1)
  assert rows["first_piece"][0].sum() == 3  # three whole words fit, the fourth is dropped
  assert rows["tokens"][0, 1 + 3 * size] == tok.SEP_ID


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

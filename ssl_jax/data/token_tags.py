"""Tagged words (BIO) for token classification: the CoNLL reader, the tag vocabulary, and the
alignment of word tags to sentencepiece pieces.

CoNLL files hold one word per line, whitespace-separated columns with the word first and its
tag last (`word tag`, or CoNLL-2003's `word POS chunk tag`), a blank line between sentences,
and optional `-DOCSTART-` lines (skipped).

Alignment follows Hugging Face's `run_ner`: every word is encoded on its own, its first piece
carries the word's tag and the other pieces are ignored (`IGNORE`), or with
`label_all_tokens=True` carry the tag too with B-X turned into I-X. Rows are
`[CLS] pieces [SEP]` padded to `seq_len`; a sentence too long for its row becomes overlapping
windows of whole words (`ssl_jax.data.tag_windows`), so every word of every sentence is
predicted and scored once: `first_piece` marks the words a row owns and `sentence` the
sentence it belongs to, so scores are computed per word of whole sentences, whatever the
labelling.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping, Sequence

import numpy as np

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.source import Dataset
from ssl_jax.data.tag_windows import sentence_windows
from ssl_jax.data.text_corpus import TokenizerSpec, corpus_tokenizer, vocabulary_info
from ssl_jax.errors import ConfigError, DataError, MissingInputError
from ssl_jax.registry import DATASETS

IGNORE = -100  # a position without a tag (special tokens, later pieces): no loss, no score
Sentence = tuple[list[str], list[str]]  # (words, tags)


def split_tag(tag: str) -> tuple[str, str]:
  """("B", "PER") for "B-PER"; ("O", "") for "O"."""
  if tag == "O":
    return "O", ""
  prefix, _, kind = tag.partition("-")
  if prefix not in ("B", "I", "E", "S") or not kind:
    raise ValueError(f"Tag {tag!r} is neither O nor B-/I-/E-/S-<type>.")
  return prefix, kind


def read_conll(path: str) -> list[Sentence]:
  """The (words, tags) sentences of a CoNLL file; one `Error:`-worthy DataError per bad line."""
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except UnicodeDecodeError as error:
    raise DataError(f"{path} is not UTF-8 text: {error}") from error
  sentences: list[Sentence] = []
  words: list[str] = []
  tags: list[str] = []
  for number, line in enumerate([*lines, ""], 1):
    columns = line.split()
    if not columns or columns[0] == "-DOCSTART-":
      if words:
        sentences.append((words, tags))
      words, tags = [], []
      continue
    if len(columns) < 2:
      raise DataError(
        f"{path}:{number}: {line.strip()!r} has one column; CoNLL lines are 'word tag' "
        "(word first, tag last), with a blank line between sentences."
      )
    try:
      split_tag(columns[-1])
    except ValueError:
      raise DataError(
        f"{path}:{number}: tag {columns[-1]!r} is not O or B-/I-/E-/S-<type> (BIO tags)."
      ) from None
    words.append(columns[0])
    tags.append(columns[-1])
  if not sentences:
    raise DataError(f"{path} holds no tagged sentence.")
  return sentences


def tag_vocabulary(sentences: Sequence[Sentence]) -> list[str]:
  """ "O" first, then each entity type's B-, I-, E-, S- tags present (types sorted); every
  type gets both B- and I- (a type seen only as B- may still be predicted as I-)."""
  kinds: dict[str, set[str]] = {}
  for _, tags in sentences:
    for tag in tags:
      prefix, kind = split_tag(tag)
      if prefix != "O":
        kinds.setdefault(kind, {"B", "I"}).add(prefix)
  return ["O"] + [
    f"{prefix}-{kind}" for kind in sorted(kinds) for prefix in "BIES" if prefix in kinds[kind]
  ]


def inside_tag(tag: str) -> str:
  """The tag of a word's later pieces under `label_all_tokens`: B-X becomes I-X."""
  return "I-" + tag[2:] if tag.startswith("B-") else tag


def align_tags(
  tokenizer: tok.TextTokenizer,
  sentences: Sequence[Sentence],
  tag_names: Sequence[str],
  seq_len: int,
  label_all_tokens: bool = False,
  overlap: int = -1,
) -> dict[str, np.ndarray]:
  """{"tokens", "tags" (tag index or IGNORE), "first_piece" (bool), each [N, seq_len], and
  "sentence" [N]}: one row per window of each sentence (`tag_windows`; one row when it fits).
  Every word of a window carries its tag (training sees them all); `first_piece` marks the
  first pieces of the words the row owns, so each word is scored once. `overlap`: pieces
  shared by consecutive windows (-1: a quarter of the row)."""
  index = {name: i for i, name in enumerate(tag_names)}
  room = seq_len - 2
  overlap = room // 4 if overlap < 0 else overlap
  rows: list[tuple[int, list[list[int]], list[str], int, int]] = []
  for number, (words, tags) in enumerate(sentences):
    unknown = sorted(set(tags) - set(index))
    if unknown:
      raise DataError(f"Tags {unknown} are not in the training tags {list(tag_names)}.")
    # A word the tokenizer drops entirely still holds a place; one longer than the row keeps
    # its first pieces.
    pieces = [(p or [tokenizer.stand_in_id])[:room] for p in tokenizer.encode(list(words))]
    for start, end, owned_start, owned_end in sentence_windows(
      [len(p) for p in pieces], room, overlap
    ):
      rows.append(
        (number, pieces[start:end], tags[start:end], owned_start - start, owned_end - start)
      )
  tokens = np.full((len(rows), seq_len), tokenizer.pad_id, np.int32)
  labels = np.full((len(rows), seq_len), IGNORE, np.int32)
  first = np.zeros((len(rows), seq_len), bool)
  sentence = np.zeros(len(rows), np.int32)
  for row, (number, word_pieces, tags, owned_start, owned_end) in enumerate(rows):
    sentence[row] = number
    tokens[row, 0] = tokenizer.cls_id
    position = 1
    for i, (word, tag) in enumerate(zip(word_pieces, tags)):
      tokens[row, position : position + len(word)] = word
      labels[row, position] = index[tag]
      if label_all_tokens:
        labels[row, position + 1 : position + len(word)] = index[inside_tag(tag)]
      first[row, position] = owned_start <= i < owned_end
      position += len(word)
    tokens[row, position] = tokenizer.sep_id
  return {"tokens": tokens, "tags": labels, "first_piece": first, "sentence": sentence}


@DATASETS.register("conll_files", modality="text")
def conll_files(
  workdir: str | None = None,
  train_path: str = "",
  test_path: str = "",
  validation_path: str = "",
  seq_len: int = 128,
  label_all_tokens: bool = False,
  vocab_size: int = 4000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  window_overlap: int = -1,
) -> Dataset:
  """Tagged rows of the user's CoNLL files (`train_path`, `test_path`, optional
  `validation_path`). The tag set is the training file's (`tag_vocabulary`); a test tag not
  in it is an error. Give the pretraining run's `tokenizer_path` when fine-tuning; without
  one, a tokenizer is trained on the training sentences (cached in the workdir)."""
  paths = {"train": train_path, "test": test_path, "validation": validation_path}
  for split in ("train", "test"):
    if not paths[split]:
      raise ConfigError(f"config.data.{split}_path is empty; name a CoNLL file.")
  for split, path in paths.items():
    if path and not os.path.isfile(path):
      raise MissingInputError(f"config.data.{split}_path={path!r} does not exist.")
  sentences = {split: read_conll(path) for split, path in paths.items() if path}
  spec = TokenizerSpec(workdir, vocab_size, tokenizer_path, tokenizer_type, "conll_files")
  tokenizer = corpus_tokenizer([" ".join(words) for words, _ in sentences["train"]], spec)
  return tagged_dataset(sentences, tokenizer, seq_len, label_all_tokens, window_overlap)


def tagged_dataset(
  sentences: Mapping[str, Sequence[Sentence]],
  tokenizer: tok.TextTokenizer,
  seq_len: int,
  label_all_tokens: bool,
  window_overlap: int = -1,
) -> Dataset:
  """The Dataset of tagged sentences by split ("train" required): aligned rows, the train
  tag set, and each row's `tag_group` for label budgets (`sentence_groups`)."""
  if seq_len < 3:
    raise ConfigError(f"config.data.seq_len={seq_len}: a tagged row needs [CLS], a word, [SEP].")
  tag_names = tag_vocabulary(sentences["train"])
  splits = {
    split: align_tags(tokenizer, rows, tag_names, seq_len, label_all_tokens, window_overlap)
    for split, rows in sentences.items()
  }
  counts = collections.Counter(
    split_tag(tag)[1] for _, tags in sentences["train"] for tag in tags if tag[:2] in ("B-", "S-")
  )
  kinds = sorted(counts)
  for split, rows in sentences.items():
    # Each window carries its sentence's group.
    splits[split]["tag_group"] = sentence_groups(rows, kinds, counts)[splits[split]["sentence"]]
  return Dataset(
    splits=splits,
    modality="text",
    info={
      **vocabulary_info(tokenizer),
      "num_classes": len(tag_names),
      "tag_names": tag_names,
      "entity_types": kinds,
      "train_entities": {kind: counts[kind] for kind in kinds},
      "label_all_tokens": label_all_tokens,
      "budget_column": "tag_group",
    },
  )


def sentence_groups(
  sentences: Sequence[Sentence], kinds: Sequence[str], counts: Mapping[str, int]
) -> np.ndarray:
  """Each sentence's rarest entity type (index into `kinds`; -1 without a known entity), so a
  budget of k sentences per group holds at least k sentences mentioning every type."""
  index = {kind: i for i, kind in enumerate(kinds)}
  groups = np.full(len(sentences), -1, np.int32)
  for row, (_, tags) in enumerate(sentences):
    present = {split_tag(tag)[1] for tag in tags if tag != "O"} & set(index)
    if present:
      groups[row] = index[min(present, key=lambda kind: (counts[kind], kind))]
  return groups

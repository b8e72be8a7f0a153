"""Sentence-pair rows for next-sentence (BERT) and sentence-order (ALBERT) prediction.

The builder follows google-research/bert's `create_pretraining_data.py` step for step:

  - Each document is a list of tokenized sentences. A target length is drawn per document:
    `max_seq_length - 3`, or with probability `short_seq_prob` a uniform length in
    [2, max_seq_length - 3] (so the model also sees short rows).
  - Sentences accumulate into a chunk until it reaches the target length (or the document
    ends). `a_end` is uniform in [1, len(chunk) - 1]: A is chunk[:a_end].
  - nsp: with probability 0.5, or always when the chunk has one sentence, B is read from a
    random other document (same split) starting at a random sentence until it holds the
    target length minus len(A); the chunk's unused sentences are put back (the next chunk
    starts with them). Otherwise B is chunk[a_end:]. Label 1 = random, 0 = continuation
    (Hugging Face's `next_sentence_label` convention).
  - sop: B is always chunk[a_end:], the true continuation; with probability 0.5 A and B are
    swapped (label 1 = swapped, 0 = in order). A one-sentence chunk has no order to predict
    and makes no row (ALBERT fills it with a random document instead, which is NSP's task).
  - `truncate_seq_pair` trims the longer of A and B, one token at a time, from the front or
    the back at random, until A + B fit `max_seq_length - 3` (Hugging Face's own NSP dataset
    never truncates; this one always does).

Rows are `[CLS] A [SEP] B [SEP]` padded to `max_seq_length`, with token types 0 on [CLS], A
and the first [SEP], 1 on B and the last [SEP].

`split_sentences` is the sentence splitter for plain text: paragraphs at blank lines, lines of
a paragraph joined by spaces, then a cut after ".", "!" or "?" (optionally closed by a quote
or bracket) followed by white space and an upper-case letter, digit, quote or bracket. It is a
heuristic (no abbreviation list): "e.g. This" splits, "e.g. this" does not.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np

from ssl_jax.data import tokenizer as tok
from ssl_jax.errors import ConfigError

PAIR_OBJECTIVES = ("nsp", "sop")
Sentence = list[int]
Pair = tuple[list[int], list[int], int]

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[A-Z0-9\"'(\[`])")


def split_sentences(text: str) -> list[str]:
  """The sentences of `text` (see the module docstring for the rule)."""
  sentences = []
  for paragraph in re.split(r"\n\s*\n", text):
    joined = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())
    sentences += [s.strip() for s in _SENTENCE_END.split(joined) if s.strip()]
  return sentences


def truncate_seq_pair(
  tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: random.Random
) -> None:
  """Trims the longer list in place, from the front or back at random, until both fit."""
  while len(tokens_a) + len(tokens_b) > max_num_tokens:
    trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    if rng.random() < 0.5:
      del trunc[0]
    else:
      trunc.pop()


def document_pairs(
  documents: Sequence[Sequence[Sentence]],
  document_index: int,
  objective: str,
  max_seq_length: int,
  short_seq_prob: float,
  rng: random.Random,
) -> list[Pair]:
  """The (A, B, label) pairs of one document (BERT's `create_instances_from_document`)."""
  document = documents[document_index]
  max_num_tokens = max_seq_length - 3
  target_seq_length = max_num_tokens
  if rng.random() < short_seq_prob:
    target_seq_length = rng.randint(2, max_num_tokens)
  pairs: list[Pair] = []
  chunk: list[Sentence] = []
  chunk_length = 0
  i = 0
  while i < len(document):
    chunk.append(document[i])
    chunk_length += len(document[i])
    if i == len(document) - 1 or chunk_length >= target_seq_length:
      if chunk and not (objective == "sop" and len(chunk) < 2):
        a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
        if objective == "nsp" and (len(chunk) == 1 or rng.random() < 0.5):
          label = 1
          tokens_b = _random_continuation(
            documents, document_index, target_seq_length - len(tokens_a), rng
          )
          i -= len(chunk) - a_end  # the unused sentences start the next chunk
        else:
          tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
          label = 0
          if objective == "sop" and rng.random() < 0.5:
            tokens_a, tokens_b, label = tokens_b, tokens_a, 1
        truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
        if tokens_a and tokens_b:
          pairs.append((tokens_a, tokens_b, label))
      chunk, chunk_length = [], 0
    i += 1
  return pairs


def _random_continuation(
  documents: Sequence[Sequence[Sentence]], document_index: int, target_length: int, rng
) -> list[int]:
  """Sentences of a random other document from a random start until `target_length` tokens
  (BERT tries 10 draws to avoid the document itself)."""
  for _ in range(10):
    other = rng.randint(0, len(documents) - 1)
    if other != document_index:
      break
  random_document = documents[other]
  tokens: list[int] = []
  for sentence in random_document[rng.randint(0, len(random_document) - 1) :]:
    tokens += sentence
    if len(tokens) >= target_length:
      break
  return tokens


def build_pairs(
  documents: Sequence[Sequence[Sentence]],
  objective: str,
  max_seq_length: int,
  short_seq_prob: float = 0.1,
  passes: int = 1,
  seed: int = 0,
  min_sentences: int = 1,
) -> list[Pair]:
  """Every document's pairs, `passes` times with fresh random choices, shuffled.

  Documents with fewer than `min_sentences` sentences are dropped first (BERT drops empty
  ones). A one-sentence document can only make random NSP pairs, so on a corpus of short
  documents `min_sentences=2` keeps the labels near balanced; random next sentences are still
  drawn from every document kept.
  """
  if objective not in PAIR_OBJECTIVES:
    raise ConfigError(f"Unknown pair objective {objective!r}; valid: {list(PAIR_OBJECTIVES)}.")
  if max_seq_length < 5:
    raise ConfigError(f"seq_len={max_seq_length} leaves no room for a pair; use at least 5.")
  documents = [[s for s in d if s] for d in documents]
  documents = [d for d in documents if d and len(d) >= min_sentences]
  if objective == "nsp" and len(documents) < 2:
    raise ConfigError("nsp needs at least two documents to draw random next sentences from.")
  rng = random.Random(seed)
  pairs: list[Pair] = []
  for _ in range(passes):
    for index in range(len(documents)):
      pairs += document_pairs(documents, index, objective, max_seq_length, short_seq_prob, rng)
  rng.shuffle(pairs)
  return pairs


def pair_rows(
  pairs: Sequence[Pair], seq_len: int, tokenizer: tok.TextTokenizer
) -> dict[str, np.ndarray]:
  """{"tokens", "token_types": [N, seq_len] int32, "pair_label": [N] int32} of the pairs,
  `[CLS] A [SEP] B [SEP]` with the tokenizer's row tokens."""
  tokens = np.full((len(pairs), seq_len), tokenizer.pad_id, np.int32)
  types = np.zeros((len(pairs), seq_len), np.int32)
  labels = np.zeros(len(pairs), np.int32)
  for row, (a, b, label) in enumerate(pairs):
    ids = [tokenizer.cls_id, *a, tokenizer.sep_id, *b, tokenizer.sep_id]
    if len(ids) > seq_len:
      raise ValueError(f"pair of {len(ids)} tokens exceeds seq_len {seq_len}")
    tokens[row, : len(ids)] = ids
    types[row, len(a) + 2 : len(ids)] = 1
    labels[row] = label
  return {"tokens": tokens, "token_types": types, "pair_label": labels}

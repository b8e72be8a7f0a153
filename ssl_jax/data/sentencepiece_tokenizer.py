"""ssl_jax's own tokenizer: a sentencepiece model trained on the run's text (saved atomically),
with BERT-style special tokens at fixed ids."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable

import sentencepiece as spm

from ssl_jax.data.tokenizer_base import TextTokenizer, check_extra_ids
from ssl_jax.errors import DataError, MissingInputError
from ssl_jax.files import write_bytes

# Fixed ids so every objective can rely on them; [MASK] is a user-defined piece right after.
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4


class SentencePieceTokenizer(TextTokenizer):
  """A sentencepiece model with BERT-style special tokens at fixed ids, plus `extra_ids` T5
  sentinels appended after the sentencepiece vocabulary the way seqio does it:
  `<extra_id_0>` is the last id, `<extra_id_1>` the one before, and so on. [CLS] and [SEP]
  double as BOS and EOS (sentencepiece's bos/eos pieces)."""

  kind = "sentencepiece"
  pad_id, unk_id, cls_id, sep_id, mask_id = PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID
  bos_id, eos_id = CLS_ID, SEP_ID

  def __init__(self, model_path: str, extra_ids: int = 0):
    self.extra_ids = check_extra_ids(extra_ids)
    if not os.path.isfile(model_path):
      raise MissingInputError(f"Tokenizer model {model_path!r} does not exist.")
    self.path = model_path
    try:
      self.sp = spm.SentencePieceProcessor(model_file=model_path)
    except (OSError, RuntimeError) as error:
      raise DataError(
        f"Tokenizer model {model_path!r} cannot be read as a sentencepiece model ({error})."
      ) from error
    expected = {
      PAD_ID: "[PAD]",
      UNK_ID: "[UNK]",
      CLS_ID: "[CLS]",
      SEP_ID: "[SEP]",
      MASK_ID: "[MASK]",
    }
    found = {i: self.sp.id_to_piece(i) for i in expected}
    if found != expected:
      raise DataError(
        f"Tokenizer {model_path!r} has special pieces {found}; expected {expected}. "
        "Train it with ssl_jax.data.tokenizer.train_tokenizer."
      )

  @property
  def text_vocab_size(self) -> int:
    """Pieces sentencepiece can produce from text (ids below this); sentinels come after."""
    return self.sp.get_piece_size()

  def piece(self, token_id: int) -> str:
    return self.sp.id_to_piece(token_id)

  def special_tokens(self) -> dict[str, object]:
    """Every special token and its id, as written into the run's config.json (the names runs
    have always recorded, so a finished run's facts read the same)."""
    tokens: dict[str, object] = {
      "[PAD]": PAD_ID,
      "[UNK]": UNK_ID,
      "[CLS] (bos)": CLS_ID,
      "[SEP] (eos)": SEP_ID,
      "[MASK]": MASK_ID,
    }
    if self.extra_ids:
      tokens[f"<extra_id_0..{self.extra_ids - 1}>"] = [
        self.sentinel_id(0),
        self.sentinel_id(self.extra_ids - 1),
      ]
    return tokens

  def encode(self, texts: list[str]) -> list[list[int]]:
    return self.sp.encode(texts)

  def decode(self, ids: list[int]) -> str:
    """Text of `ids` without [PAD]/[CLS]/[SEP]/[MASK]; sentinels print as `<extra_id_k>`."""
    pieces, run = [], []
    for i in ids:
      if i >= self.text_vocab_size:
        pieces += [self.sp.decode(run), f"<extra_id_{self.vocab_size - 1 - i}>"]
        run = []
      elif i not in self.special_ids:
        run.append(i)
    return " ".join(p for p in pieces + [self.sp.decode(run)] if p)


def train_tokenizer(
  texts: Iterable[str],
  model_path: str,
  vocab_size: int,
  model_type: str = "unigram",
  seed_sentencepiece_size: int = 200_000,
) -> SentencePieceTokenizer:
  """Trains a sentencepiece model on `texts` (one sentence per item) and writes it atomically."""
  if model_type not in ("unigram", "bpe"):
    raise DataError(f"Unknown sentencepiece model_type {model_type!r}; valid: ['bpe', 'unigram'].")
  buffer = io.BytesIO()
  try:
    _train(texts, buffer, vocab_size, model_type, seed_sentencepiece_size)
  except RuntimeError as error:
    limit = re.search(r"value <= (\d+)", str(error))
    if limit:
      raise DataError(
        f"vocab_size={vocab_size} is too large for this text: sentencepiece can "
        f"make at most {limit.group(1)} pieces from it. Lower "
        "config.data.vocab_size."
      ) from error
    # Every character of the text (character_coverage=1.0) and every special token is a piece.
    floor = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(error))
    if floor:
      raise DataError(
        f"vocab_size={vocab_size} is too small for this text: its characters "
        f"and special tokens alone need {floor.group(1)} pieces. Raise "
        "config.data.vocab_size."
      ) from error
    raise
  # Write-then-rename: a crash mid-write never leaves a truncated model behind.
  write_bytes(model_path, buffer.getvalue())
  return SentencePieceTokenizer(model_path)


def _train(
  texts: Iterable[str],
  buffer: io.BytesIO,
  vocab_size: int,
  model_type: str,
  seed_sentencepiece_size: int,
) -> None:
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(texts),
    model_writer=buffer,
    vocab_size=vocab_size,
    model_type=model_type,
    character_coverage=1.0,
    num_threads=1,
    pad_id=PAD_ID,
    unk_id=UNK_ID,
    bos_id=CLS_ID,
    eos_id=SEP_ID,
    pad_piece="[PAD]",
    unk_piece="[UNK]",
    bos_piece="[CLS]",
    eos_piece="[SEP]",
    user_defined_symbols=["[MASK]"],
    seed_sentencepiece_size=seed_sentencepiece_size,
    max_sentence_length=16384,
    minloglevel=2,
  )

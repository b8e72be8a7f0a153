"""The tokenizer contract every text pipeline uses: ids of the special tokens by role, text to
ids and back, the word-start table of whole-word masking, and T5 sentinels.

Two implementations: `SentencePieceTokenizer` (ssl_jax's own, trained in the workdir, special
tokens at fixed ids) and `JsonTokenizer` (a model directory's `tokenizer.json`, read through
the `tokenizers` library, special tokens taken from the directory). `ssl_jax.data.tokenizer.
load_tokenizer` picks one from the path.

Roles. `cls_id` starts a row and `sep_id` ends a document or separates a pair: BERT's [CLS]
and [SEP]; a decoder's BOS and EOS (a tokenizer without BOS, such as Qwen2's, starts rows with
its EOS, the document separator GPT-2 itself uses). `pad_id` fills rows; the pipelines mark
real tokens as `tokens != pad_id`, so a tokenizer without a pad token pads with its unknown
token when it has one of its own (Llama), else with EOS (GPT-2: Hugging Face's own
`pad_token = eos_token` convention, whose EOS is then not a training target). `mask_id` is
None where the tokenizer has no mask token; `require("mask", ...)` refuses such a pairing
before any work.
"""

from __future__ import annotations

import abc

import numpy as np

from ssl_jax.errors import DataError

ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")


class TextTokenizer(abc.ABC):
  """What the text pipelines need of a tokenizer (see the module docstring).

  Subclasses set `path`, `kind`, `extra_ids` and the role ids (`pad_id`, `unk_id`, `cls_id`,
  `sep_id`, `mask_id`, `bos_id`, `eos_id`; `unk_id` and `mask_id` may be None), and implement
  `text_vocab_size`, `piece`, `encode` and `decode`."""

  path: str
  kind: str
  extra_ids: int = 0
  pad_id: int
  unk_id: int | None
  cls_id: int
  sep_id: int
  mask_id: int | None
  bos_id: int
  eos_id: int
  # How a word-initial piece is marked ("\u2581" for sentencepiece); None: by `is_word_start`.
  word_prefix: str | None = "\u2581"

  @property
  @abc.abstractmethod
  def text_vocab_size(self) -> int:
    """Ids the tokenizer itself can produce (all below this); sentinels come after."""

  @property
  def vocab_size(self) -> int:
    return self.text_vocab_size + self.extra_ids

  @abc.abstractmethod
  def piece(self, token_id: int) -> str:
    """The string of one id (its vocabulary entry)."""

  @abc.abstractmethod
  def encode(self, texts: list[str]) -> list[list[int]]:
    """Ids of each text, without special tokens (the pipelines add those)."""

  @abc.abstractmethod
  def decode(self, ids: list[int]) -> str:
    """Text of `ids` without the special tokens."""

  def is_word_start(self, piece: str) -> bool:
    return self.word_prefix is not None and piece.startswith(self.word_prefix)

  def sentinel_id(self, k: int) -> int:
    """The id of `<extra_id_k>` (T5's sentinels: `<extra_id_0>` is the last id)."""
    if not 0 <= k < self.extra_ids:
      raise DataError(
        f"<extra_id_{k}> does not exist; this tokenizer has {self.extra_ids} "
        "extra ids (config.data.extra_ids)."
      )
    return self.vocab_size - 1 - k

  @property
  def stand_in_id(self) -> int:
    """Holds the place of a text that encodes to no ids: the unknown token, else the end."""
    return self.unk_id if self.unk_id is not None else self.sep_id

  def role_ids(self) -> dict[str, int | None]:
    return {role: getattr(self, f"{role}_id") for role in ROLES}

  def require(self, role: str, why: str) -> int:
    """The id of `role`, or one DataError naming the token this tokenizer lacks and `why`."""
    token_id = getattr(self, f"{role}_id")
    if token_id is None:
      present = sorted(r for r, i in self.role_ids().items() if i is not None)
      raise DataError(
        f"Tokenizer {self.path!r} has no {role} token, which {why} needs; it has "
        f"{present}. Use a tokenizer with a {role} token, or another task."
      )
    return token_id

  @property
  def special_ids(self) -> tuple[int, ...]:
    """Ids that are never text: padding, row start and end, mask (decode drops them)."""
    ids = (self.pad_id, self.cls_id, self.sep_id, self.bos_id, self.eos_id, self.mask_id)
    return tuple(sorted({i for i in ids if i is not None}))

  def special_tokens(self) -> dict[str, object]:
    """Every special token by role, with its string and id, as config.json records it."""
    tokens: dict[str, object] = {
      f"{role} {self.piece(i)}": i for role, i in self.role_ids().items() if i is not None
    }
    if self.extra_ids:
      tokens[f"<extra_id_0..{self.extra_ids - 1}>"] = [
        self.sentinel_id(0),
        self.sentinel_id(self.extra_ids - 1),
      ]
    return tokens

  def word_start_table(self) -> np.ndarray:
    """[vocab] bool: the piece begins a word, or is special. Whole-word masking keeps the
    pieces between two starts together."""
    pieces = [self.piece(i) for i in range(self.text_vocab_size)]
    # Sentinels stand for whole spans: each is a word of its own.
    table = np.array([self.is_word_start(p) for p in pieces] + [True] * self.extra_ids, bool)
    table[[i for i in (*self.special_ids, self.unk_id) if i is not None]] = True
    return table


def check_extra_ids(extra_ids: int) -> int:
  if extra_ids < 0:
    raise DataError(f"extra_ids must be >= 0, got {extra_ids}.")
  return extra_ids

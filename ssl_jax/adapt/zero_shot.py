"""Zero-shot classification with a pretrained language model: no gradient step, only scores.

A row "[CLS] text [SEP]" becomes "[CLS] text prompt word" and each class is scored by the
pretrained model, as one batched, jitted computation (`ZeroShotPrompt` lays the sequences out
on device):

- causal LM (lm-evaluation-harness style): log p(word | [CLS] text prompt) summed over the
  word's pieces ("sum"), divided by their number ("per_token", which stops long words from
  losing only for being long), or minus the same score after the prompt alone ("pmi",
  Holtzman et al. 2021's domain-conditional PMI);
- masked LM (PET, Schick & Schuetze 2021): "[CLS] text prompt [MASK] [SEP]", and a class
  scores log p(its one-piece word at [MASK]).

The model enters as functions (`causal_scores`'s encode/attend, `pet_scores`'s log-probs at
one position), so any pretrained task with those capabilities can be scored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.data import tokenizer as tok
from ssl_jax.registry import ConfigError

CAUSAL, PET = "causal", "pet"
SCORINGS = ("sum", "per_token", "pmi")


def single_token_verbalizers(tokenizer: Any, words: Sequence[str]) -> list[int]:
  """The one id of each label word (as a word: a leading space), for PET."""
  ids = []
  for word in words:
    pieces = tokenizer.encode([" " + word])[0]
    if len(pieces) != 1:
      raise ConfigError(
        f"Verbalizer {word!r} is {len(pieces)} pieces "
        f"{[tokenizer.piece(p) for p in pieces]}; masked-LM scoring "
        "needs one. Choose another word or score with a causal LM."
      )
    ids.append(pieces[0])
  return ids


@dataclasses.dataclass(frozen=True)
class ZeroShotPrompt:
  """A prompt appended to each example's text, and the label words scored after it.

  A row is "[CLS] text [SEP] [PAD]...". For a causal LM (lm-evaluation-harness style) the
  sequence "[CLS] text prompt word" is scored by log p(word | [CLS] text prompt), summed over
  the word's pieces ("sum"), divided by their number ("per_token"), or minus the same score
  without the text ("pmi"). For a masked LM (PET) the sequence is "[CLS] text prompt [MASK]
  [SEP]" and a class scores log p(its one-piece word at [MASK]).
  """

  kind: str  # CAUSAL or PET
  scoring: str
  prompt: np.ndarray  # [S] the prompt's pieces
  verbalizers: np.ndarray  # [C, V] each word's pieces, padded
  lengths: np.ndarray  # [C] pieces per word
  length: int  # positions of a scored sequence (at most the model's)
  pad_id: int
  cls_id: int
  sep_id: int
  mask_id: int | None  # PET's [MASK] (None for causal scoring)

  @classmethod
  def build(
    cls,
    tokenizer: tok.TextTokenizer,
    prompt: str,
    words: list[str],
    kind: str,
    scoring: str,
    seq_len: int,
    max_length: int,
  ) -> ZeroShotPrompt:
    if scoring not in SCORINGS:
      raise ConfigError(f"Unknown config.task_kwargs.scoring {scoring!r}; valid: {list(SCORINGS)}.")
    prompt_ids = tokenizer.encode([prompt])[0] if prompt else []
    if kind == PET:
      tokenizer.require("mask", "masked-LM (PET) zero-shot scoring")
      ids = [[i] for i in single_token_verbalizers(tokenizer, words)]
    else:
      ids = [tokenizer.encode([" " + word])[0] for word in words]
    width = max(len(i) for i in ids)
    if len(prompt_ids) + width + 8 > max_length:
      raise ConfigError(
        f"The zero-shot prompt ({len(prompt_ids)} pieces) and words (up to "
        f"{width}) leave too little of the pretrained model's {max_length} "
        "positions for the text: shorten them."
      )
    verbalizers = np.zeros((len(ids), width), np.int32)
    for c, pieces in enumerate(ids):
      verbalizers[c, : len(pieces)] = pieces
    # The text is cut (from its end) where "text prompt word" would not fit the model.
    length = min(seq_len + len(prompt_ids) + (2 if kind == PET else width), max_length)
    return cls(
      kind,
      scoring,
      np.asarray(prompt_ids, np.int32),
      verbalizers,
      np.asarray([len(i) for i in ids], np.float32),
      length,
      tokenizer.pad_id,
      tokenizer.cls_id,
      tokenizer.sep_id,
      tokenizer.mask_id,
    )

  def _layout(self, tokens: jnp.ndarray, extra: int):
    """Each row's text (up to its [SEP], cut to leave room) then the prompt, in rows of
    `self.length`: (sequences [B, L2], index [1, L2], where the prompt ends [B, 1])."""
    length = self.length
    index = jnp.arange(length)[None]
    cut = (tokens != self.pad_id).sum(-1, keepdims=True) - 1  # the [SEP] position
    cut = jnp.minimum(cut, length - len(self.prompt) - extra)
    text = jnp.pad(tokens, ((0, 0), (0, max(0, length - tokens.shape[1]))))[:, :length]
    sequences = jnp.where(index < cut, text, self.pad_id)
    if len(self.prompt):
      prompt = jnp.asarray(self.prompt)[jnp.clip(index - cut, 0, len(self.prompt) - 1)]
      sequences = jnp.where((index >= cut) & (index < cut + len(self.prompt)), prompt, sequences)
    return sequences, index, cut + len(self.prompt)

  def continuations(self, tokens: jnp.ndarray, pad_id: int):
    """Per class: sequences [B, C, L2], valid [B, C, L2], the positions that predict the
    word's pieces [B, C, V], the pieces [B, C, V] and their weights [B, C, V]."""
    del pad_id
    width = self.verbalizers.shape[1]
    sequences, index, end = self._layout(tokens, width)
    words = jnp.asarray(self.verbalizers)  # [C, V]
    offset = index - end  # [B, L2]: position inside the word
    piece = words[:, jnp.clip(offset, 0, width - 1)]  # [C, B, L2]
    inside = (offset >= 0)[None] & (
      offset[None] < jnp.asarray(self.lengths, jnp.int32)[:, None, None]
    )
    sequences = jnp.where(inside, piece, sequences[None]).transpose(1, 0, 2)
    valid = sequences != self.pad_id
    batch, classes = tokens.shape[0], len(words)
    at = jnp.broadcast_to(end[:, None] - 1 + jnp.arange(width)[None, None], (batch, classes, width))
    targets = jnp.broadcast_to(words[None], (batch, classes, width))
    weights = jnp.broadcast_to(
      (jnp.arange(width)[None] < jnp.asarray(self.lengths)[:, None]).astype(jnp.float32)[None],
      (batch, classes, width),
    )
    return sequences, valid, at, targets, weights

  def masked(self, tokens: jnp.ndarray, pad_id: int):
    """PET: sequences [B, L2] ending "prompt [MASK] [SEP]", valid [B, L2], the [MASK]
    position [B]."""
    del pad_id
    sequences, index, end = self._layout(tokens, 2)
    sequences = jnp.where(index == end, self.mask_id, sequences)
    sequences = jnp.where(index == end + 1, self.sep_id, sequences)
    return sequences, sequences != self.pad_id, end[:, 0]


# (tokens [N, L], valid [N, L]) -> hidden states [N, L, D]; hidden [..., D] -> logits [..., V].
Encode = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
Attend = Callable[[jnp.ndarray], jnp.ndarray]
# (tokens [B, L], positions [B]) -> [B, V] log-probabilities of the token at each position.
MaskedLogProbs = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def causal_scores(
  prompt: ZeroShotPrompt, encode: Encode, attend: Attend, tokens: jnp.ndarray
) -> jnp.ndarray:
  """[B, classes] scores of each label word after "text + prompt" (see the module docstring)."""

  def continuation(rows):
    sequences, valid, at, targets, weights = prompt.continuations(rows, prompt.pad_id)
    batch, classes, length = sequences.shape
    hidden = encode(sequences.reshape(-1, length), valid.reshape(-1, length))
    hidden = jnp.take_along_axis(hidden, at.reshape(batch * classes, -1)[..., None], axis=1)
    # The vocabulary is projected only where a word's piece is predicted.
    log_probs = jax.nn.log_softmax(attend(hidden).astype(jnp.float32))
    picked = jnp.take_along_axis(
      log_probs, targets.reshape(batch * classes, -1)[..., None], axis=-1
    )[..., 0].reshape(batch, classes, -1)
    return (picked * weights).sum(-1)

  scores = continuation(tokens)
  if prompt.scoring == "per_token":
    scores = scores / prompt.lengths
  elif prompt.scoring == "pmi":
    empty = (
      jnp.full((1, tokens.shape[1]), prompt.pad_id, tokens.dtype)
      .at[:, :2]
      .set(jnp.asarray([prompt.cls_id, prompt.sep_id], tokens.dtype))
    )
    scores = scores - continuation(empty)
  return scores


def pet_scores(
  prompt: ZeroShotPrompt, masked_log_probs: MaskedLogProbs, tokens: jnp.ndarray
) -> jnp.ndarray:
  """[B, classes] log p(each class's one-piece word at the [MASK] after "text + prompt")."""
  sequences, _, positions = prompt.masked(tokens, prompt.pad_id)
  return masked_log_probs(sequences, positions)[:, prompt.verbalizers[:, 0]]

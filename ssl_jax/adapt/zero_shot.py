"""Zero-shot classification with a pretrained language model: no gradient step, only scores.

- Causal LM (lm-evaluation-harness style): each class has a verbalizer (token ids); the score
  of class c for prompt x is log p(verbalizer_c | x), summed over the verbalizer's tokens
  ("sum") or divided by their number ("per_token", which stops long verbalizers from losing
  only for being long).
- Masked LM (PET, Schick & Schuetze 2021): the prompt holds one [MASK]; the score of class c
  is the log-probability of its single-token verbalizer at that position.

The model enters as a function, so any task's model can be scored: see
`causal_log_probs_fn` and `masked_log_probs_fn` for ssl_jax's `causal_lm` and `mlm` tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# (tokens [B, L], valid [B, L]) -> [B, L, V]: log p(next token | tokens[:, :t+1]) at each t.
NextTokenLogProbs = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
# (tokens [B, L], valid [B, L], positions [B]) -> [B, V]: log p(token at position | the rest).
MaskedLogProbs = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def continuation_scores(
  log_probs_fn: NextTokenLogProbs,
  prompts: Sequence[Sequence[int]],
  verbalizers: Sequence[Sequence[int]],
  pad_id: int,
) -> dict[str, np.ndarray]:
  """{"sum", "per_token"}: [num_prompts, num_classes] log-likelihoods of every verbalizer
  after every prompt, from one batched forward pass over the N x C concatenations."""
  if any(len(v) == 0 for v in verbalizers):
    raise ValueError("Every verbalizer needs at least one token.")
  if any(len(p) == 0 for p in prompts):
    raise ValueError(
      "Every prompt needs at least one token (the first verbalizer token is "
      "predicted from the prompt's last position)."
    )
  num_prompts, num_classes = len(prompts), len(verbalizers)
  length = max(len(p) for p in prompts) + max(len(v) for v in verbalizers)
  width = max(len(v) for v in verbalizers)
  tokens = np.full((num_prompts * num_classes, length), pad_id, np.int32)
  valid = np.zeros_like(tokens, bool)
  # Position t predicts token t + 1: gather log_probs[t, token[t + 1]] over each verbalizer.
  at = np.zeros((len(tokens), width), np.int32)
  target = np.zeros((len(tokens), width), np.int32)
  weight = np.zeros((len(tokens), width), np.float32)
  for i, prompt in enumerate(prompts):
    for c, verbalizer in enumerate(verbalizers):
      row, sequence = i * num_classes + c, list(prompt) + list(verbalizer)
      tokens[row, : len(sequence)] = sequence
      valid[row, : len(sequence)] = True
      k = len(verbalizer)
      at[row, :k] = np.arange(len(prompt) - 1, len(prompt) - 1 + k)
      target[row, :k] = verbalizer
      weight[row, :k] = 1.0
  log_probs = log_probs_fn(jnp.asarray(tokens), jnp.asarray(valid))
  picked = jnp.take_along_axis(
    jnp.take_along_axis(log_probs, jnp.asarray(at)[..., None], axis=1),
    jnp.asarray(target)[..., None],
    axis=2,
  )[..., 0]
  total = np.asarray((picked * weight).sum(-1)).reshape(num_prompts, num_classes)
  lengths = np.asarray([len(v) for v in verbalizers], np.float32)
  return {"sum": total, "per_token": total / lengths}


def masked_scores(
  log_probs_fn: MaskedLogProbs,
  prompts: Sequence[Sequence[int]],
  mask_id: int,
  verbalizer_ids: Sequence[int],
  pad_id: int,
) -> np.ndarray:
  """[num_prompts, num_classes] log p(verbalizer_c at the [MASK] of each prompt)."""
  length = max(len(p) for p in prompts)
  tokens = np.full((len(prompts), length), pad_id, np.int32)
  positions = np.zeros(len(prompts), np.int32)
  for i, prompt in enumerate(prompts):
    masks = [t for t, token in enumerate(prompt) if token == mask_id]
    if len(masks) != 1:
      raise ValueError(f"Prompt {i} has {len(masks)} [MASK] tokens; PET scoring needs one.")
    tokens[i, : len(prompt)] = prompt
    positions[i] = masks[0]
  valid = np.zeros_like(tokens, bool)
  for i, prompt in enumerate(prompts):
    valid[i, : len(prompt)] = True
  log_probs = log_probs_fn(jnp.asarray(tokens), jnp.asarray(valid), jnp.asarray(positions))
  return np.asarray(log_probs[:, jnp.asarray(verbalizer_ids)])


def causal_log_probs_fn(task: Any, params: Any, model_state: Any) -> NextTokenLogProbs:
  """Next-token log-probabilities of a `causal_lm` task's decoder."""

  @jax.jit
  def log_probs(tokens, valid):
    hidden = task.model.apply({"params": params, **model_state}, tokens, valid, train=False)
    logits = task.model.apply({"params": params}, hidden, method=lambda m, h: m.attend(h))
    return jax.nn.log_softmax(logits.astype(jnp.float32))

  return log_probs


def masked_log_probs_fn(task: Any, params: Any, model_state: Any) -> MaskedLogProbs:
  """Log-probabilities at one position per row from an `mlm` task's encoder and head."""

  @jax.jit
  def log_probs(tokens, valid, positions):
    logits = task.model.apply(
      {"params": params, **model_state}, tokens, valid, positions[:, None], train=False
    )
    return jax.nn.log_softmax(logits[:, 0].astype(jnp.float32))

  return log_probs


def single_token_verbalizers(tokenizer: Any, words: Sequence[str]) -> list[int]:
  """The one sentencepiece id of each label word (as a word: a leading space), for PET."""
  ids = []
  for word in words:
    pieces = tokenizer.encode([" " + word])[0]
    if len(pieces) != 1:
      raise ValueError(
        f"Verbalizer {word!r} is {len(pieces)} pieces "
        f"{[tokenizer.sp.id_to_piece(p) for p in pieces]}; masked-LM scoring "
        "needs one. Choose another word or score with a causal LM."
      )
    ids.append(pieces[0])
  return ids

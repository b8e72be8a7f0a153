"""The policy-gradient loss every reward estimator shares: KL estimators, PPO-style ratio
clipping and the three ways of averaging per-token losses (TRL's `loss_type`).

Shapes: N completions (prompts x group), C completion slots; `mask` [N, C] marks completion
tokens (the EOS included), so prompt and padding positions never reach the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
KL_ESTIMATORS = ("k1", "k3")


def kl_per_token(log_probs: jax.Array, reference_log_probs: jax.Array, estimator: str) -> jax.Array:
  """Per-token estimates of KL(policy || reference) on tokens sampled from the policy
  (Schulman's k1 and k3): k1 = log p - log q (unbiased, can be negative), k3 = q/p - log(q/p) - 1
  (unbiased and never negative, GRPO's choice)."""
  if estimator not in KL_ESTIMATORS:
    raise ValueError(f"Unknown KL estimator {estimator!r}; valid: {list(KL_ESTIMATORS)}.")
  log_ratio = reference_log_probs - log_probs  # log q/p
  if estimator == "k1":
    return -log_ratio
  return jnp.exp(log_ratio) - log_ratio - 1.0


def normalise(per_token: jax.Array, mask: jax.Array, loss_type: str) -> jax.Array:
  """The scalar loss from per-token losses [N, C]:
  grpo: each completion's mean over its tokens, then the mean over completions (long
    completions weigh less per token);
  dapo: the sum over every completion token of the batch / their number (token-level);
  dr_grpo: the sum / (N * C), a constant, so no length bias at all (Dr. GRPO).
  """
  mask = mask.astype(per_token.dtype)
  total = (per_token * mask).sum()
  if loss_type == "grpo":
    per_completion = (per_token * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)
    return per_completion.mean()
  if loss_type == "dapo":
    return total / jnp.maximum(mask.sum(), 1.0)
  if loss_type == "dr_grpo":
    return total / (per_token.shape[0] * per_token.shape[1])
  raise ValueError(f"Unknown loss_type {loss_type!r}; valid: {list(LOSS_TYPES)}.")


def clipped_surrogate(
  log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array]:
  """(per-token loss [N, C], whether the clip is active there [N, C]) of PPO's clipped
  objective -min(r A, clip(r, 1 - eps, 1 + eps) A), r = p / p_old, A per completion [N].
  With fresh samples (old = the current policy, detached) r = 1 and the gradient is
  A * grad log p: plain REINFORCE / RLOO / GRPO."""
  ratio = jnp.exp(log_probs - old_log_probs)
  advantages = advantages[:, None]
  unclipped = ratio * advantages
  clipped = jnp.clip(ratio, 1.0 - epsilon, 1.0 + epsilon) * advantages
  active = ((ratio < 1.0 - epsilon) & (advantages < 0)) | (
    (ratio > 1.0 + epsilon) & (advantages > 0)
  )
  return -jnp.minimum(unclipped, clipped), active


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of `values` over the True entries of `mask` (0 when there are none)."""
  mask = mask.astype(jnp.float32)
  return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)

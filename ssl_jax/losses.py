"""Weighted losses and metrics shared by tasks and evaluators.

Weights select what counts (masked positions, real tokens, labelled rows); every mean divides by
the total weight, at least 1, so a batch with nothing to count gives 0 rather than NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  """sum(values * weights) / max(sum(weights), 1)."""
  return (values * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """-log softmax(logits)[target] at every position: [..., V], [...] -> [...]."""
  return -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]


def weighted_cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean negative log-likelihood of `targets` over the weighted positions."""
  return weighted_mean(token_nll(logits, targets), weights)


def weighted_accuracy(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """Fraction of the weighted positions whose arg-max logit is the target."""
  return weighted_mean(logits.argmax(-1) == targets, weights)


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
  """Mean (label-smoothed) softmax cross entropy of integer labels over a batch."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()


def per_row_sums(values: jax.Array, weights: jax.Array) -> jax.Array:
  """[B, ...] -> [B]: the weighted sum of each row (evaluators add rows over a split)."""
  return (values * weights).reshape(values.shape[0], -1).sum(-1)

"""Confidence-thresholded pseudo-labelling (FixMatch, Sohn et al. 2020).

On unlabelled examples the model's prediction on a weakly augmented view becomes the label of
a strongly augmented view of the same example, but only where that prediction is confident:
max softmax probability >= `threshold` (0.95 in the paper). The weak view is a target, so no
gradient flows through it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def pseudo_labels(weak_logits: jnp.ndarray, threshold: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(labels [B], mask [B] in {0, 1}): the weak view's argmax, kept where its probability
  reaches `threshold`; no gradient flows back into `weak_logits`."""
  if not 0.0 <= threshold <= 1.0:
    raise ValueError(f"The pseudo-label threshold must be in [0, 1]; got {threshold}.")
  probs = jax.nn.softmax(jax.lax.stop_gradient(weak_logits).astype(jnp.float32), axis=-1)
  return probs.argmax(-1), (probs.max(-1) >= threshold).astype(jnp.float32)


def pseudo_label_loss(
  weak_logits: jnp.ndarray, strong_logits: jnp.ndarray, threshold: float
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """FixMatch's unlabelled loss: cross entropy of the strong view against the confident
  pseudo-labels, averaged over the whole batch (unconfident examples count as zero, as in
  the paper), and the fraction of examples that passed the threshold."""
  labels, mask = pseudo_labels(weak_logits, threshold)
  losses = optax.softmax_cross_entropy_with_integer_labels(
    strong_logits.astype(jnp.float32), labels
  )
  return (losses * mask).mean(), {"pseudo_label_rate": mask.mean()}

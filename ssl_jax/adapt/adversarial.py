"""Gradient attacks on inputs: FGSM and PGD under an L-inf or L2 budget (Goodfellow et al.
2015; Madry et al. 2018), for adversarial training and robust-accuracy evaluation.

Each attack takes `loss_fn(x) -> scalar` (the loss to raise, e.g. the batch's mean cross
entropy) and returns perturbed inputs inside the budget around `x` and inside `clip` (the
valid input range, [0, 1] for images). Text is attacked in embedding space:
`embedding_adversarial_loss` gives FreeLB and embedding-PGD training losses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ssl_jax.losses import cross_entropy
from ssl_jax.registry import ConfigError

NORMS = ("linf", "l2")


def _per_example_norm(x: jnp.ndarray) -> jnp.ndarray:
  """L2 norm of each example (leading axis), shaped to broadcast against `x`."""
  norms = jnp.sqrt(jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1))
  return norms.reshape((-1,) + (1,) * (x.ndim - 1))


def project(delta: jnp.ndarray, eps: float, norm: str) -> jnp.ndarray:
  """The closest perturbation to `delta` inside the eps-ball of each example."""
  if norm == "linf":
    return jnp.clip(delta, -eps, eps)
  return delta * jnp.minimum(1.0, eps / jnp.maximum(_per_example_norm(delta), 1e-12))


def _ascent_step(grad: jnp.ndarray, step_size: float, norm: str) -> jnp.ndarray:
  """The steepest-ascent step of length `step_size` in the attack's norm."""
  if norm == "linf":
    return step_size * jnp.sign(grad)
  return step_size * grad / jnp.maximum(_per_example_norm(grad), 1e-12)


def _clip(x: jnp.ndarray, clip: tuple[float, float] | None) -> jnp.ndarray:
  return x if clip is None else jnp.clip(x, *clip)


def fgsm(
  loss_fn: Callable[[jnp.ndarray], jnp.ndarray],
  x: jnp.ndarray,
  eps: float,
  norm: str = "linf",
  clip: tuple[float, float] | None = (0.0, 1.0),
) -> jnp.ndarray:
  """One step of size eps along the loss gradient's sign (L-inf) or direction (L2)."""
  check_budget(norm, eps)
  grad = jax.grad(loss_fn)(x)
  return _clip(x + project(_ascent_step(grad, eps, norm), eps, norm), clip)


def pgd(
  loss_fn: Callable[[jnp.ndarray], jnp.ndarray],
  x: jnp.ndarray,
  eps: float,
  step_size: float,
  steps: int,
  norm: str = "linf",
  key: jax.Array | None = None,
  clip: tuple[float, float] | None = (0.0, 1.0),
) -> jnp.ndarray:
  """`steps` projected ascent steps of `step_size`; with `key`, from a uniform random start in
  the ball (L-inf: each coordinate in [-eps, eps]; L2: a random direction and radius)."""
  check_budget(norm, eps)
  delta = jnp.zeros_like(x)
  if key is not None:
    if norm == "linf":
      delta = jax.random.uniform(key, x.shape, x.dtype, -eps, eps)
    else:
      direction_key, radius_key = jax.random.split(key)
      direction = jax.random.normal(direction_key, x.shape, x.dtype)
      radius = jax.random.uniform(radius_key, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
      delta = direction / jnp.maximum(_per_example_norm(direction), 1e-12) * radius * eps
    delta = _clip(x + delta, clip) - x

  def step(_, delta):
    grad = jax.grad(loss_fn)(x + delta)
    delta = project(delta + _ascent_step(grad, step_size, norm), eps, norm)
    return _clip(x + delta, clip) - x  # clipping to the valid range keeps it in the ball

  delta = jax.lax.fori_loop(0, steps, step, delta)
  return x + delta


def embedding_adversarial_loss(
  loss_fn: Callable[[jnp.ndarray], tuple[jnp.ndarray, Any]],
  shape: tuple[int, ...],
  mask: jnp.ndarray,
  eps: float,
  step_size: float,
  steps: int,
  key: jax.Array,
  mode: str = "freelb",
) -> tuple[jnp.ndarray, Any]:
  """Adversarial training in embedding space (text has no continuous input to attack).

  `loss_fn(delta) -> (loss, aux)` is the training loss with `delta` [batch, length, width]
  added to the token embeddings; `mask` [batch, length, 1] zeroes it at padding. Each example's
  perturbation starts at a random point of its L2 ball of radius `eps` (over its real tokens)
  and takes `steps` normalised ascent steps of `step_size`, projected back into the ball.

    freelb  (Zhu et al. 2020) the loss is the mean of the losses at the perturbation before
            each ascent step, so its gradient w.r.t. the weights is FreeLB's gradient
            accumulated over the ascent ("free" adversarial training: K steps, K gradients);
    pgd     (Madry et al. 2018, on embeddings) the loss at the final perturbation only.

  The weights get no gradient through the perturbation (it is a constant of each loss).
  Returns (loss, aux of the last loss).
  """
  if mode not in EMBEDDING_MODES:
    raise ValueError(f"Unknown embedding attack {mode!r}; valid: {list(EMBEDDING_MODES)}.")
  check_budget("l2", eps)
  direction_key, radius_key = jax.random.split(key)
  direction = jax.random.normal(direction_key, shape) * mask
  radius = jax.random.uniform(radius_key, (shape[0],) + (1,) * (len(shape) - 1))
  delta = direction / jnp.maximum(_per_example_norm(direction), 1e-12) * radius * eps
  losses = []
  for _ in range(steps):
    (loss, aux), grad = jax.value_and_grad(loss_fn, has_aux=True)(jax.lax.stop_gradient(delta))
    losses.append(loss)
    delta = jax.lax.stop_gradient(
      project(delta + _ascent_step(grad * mask, step_size, "l2"), eps, "l2") * mask
    )
  if mode == "pgd":
    return loss_fn(delta)
  return jnp.mean(jnp.stack(losses)), aux


EMBEDDING_MODES = ("freelb", "pgd")


IMAGE_ATTACKS = ("fgsm", "pgd")


def check_budget(norm: str, eps: float) -> None:
  """Raises ConfigError for an unknown norm or a negative budget (checked before any work)."""
  if norm not in NORMS:
    raise ConfigError(f"Unknown attack norm {norm!r}; valid: {list(NORMS)}.")
  if eps < 0:
    raise ConfigError(f"The attack budget eps must be >= 0; got {eps}.")


def attack_images(
  logits_fn: Callable[[jnp.ndarray], jnp.ndarray],
  images: jnp.ndarray,
  labels: jnp.ndarray,
  rng: jax.Array,
  *,
  kind: str,
  eps: float,
  norm: str,
  steps: int,
  step_size: float,
) -> jnp.ndarray:
  """FGSM or PGD (random start) images against `logits_fn` on the cross entropy of `labels`,
  within the budget and [0, 1]; the model's weights get no gradient through the attack."""

  def loss_of(x):
    return cross_entropy(logits_fn(x), labels)

  if kind == "fgsm":
    attacked = fgsm(loss_of, images, eps, norm)
  else:
    attacked = pgd(loss_of, images, eps, step_size, steps, norm, key=rng)
  return jax.lax.stop_gradient(attacked)

"""Optimizers and learning-rate schedules from `config.optim`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax.registry import ConfigError

OPTIMIZERS = ("adamw", "sgd", "lars")
LR_SCALINGS = ("none", "linear", "sqrt")
SCHEDULES = ("cosine", "constant")
# Leaves with these names are biases and normalization parameters: no weight decay, no LARS
# trust ratio (the convention of SimCLR, BYOL and BERT).
NO_DECAY_NAMES = ("bias", "scale", "output_bias")


def weight_decay_mask(params: Any) -> Any:
  """True for weights that should decay: not a bias, not a norm scale, at least 2-D."""

  def decays(path, leaf) -> bool:
    name = getattr(path[-1], "key", getattr(path[-1], "name", str(path[-1])))
    return name not in NO_DECAY_NAMES and leaf.ndim > 1

  return jax.tree_util.tree_map_with_path(decays, params)


def peak_learning_rate(optim: ml_collections.ConfigDict, batch_size: int) -> float:
  """`learning_rate` scaled by the batch size relative to 256 (the SimCLR/BYOL rules)."""
  if optim.lr_scaling not in LR_SCALINGS:
    raise ConfigError(
      f"Unknown config.optim.lr_scaling {optim.lr_scaling!r}; valid: {LR_SCALINGS}."
    )
  factor = {"none": 1.0, "linear": batch_size / 256, "sqrt": math.sqrt(batch_size / 256)}
  return optim.learning_rate * factor[optim.lr_scaling]


def learning_rate_schedule(
  optim: ml_collections.ConfigDict, total_steps: int, batch_size: int
) -> Callable[[Any], Any]:
  """Linear warmup from 0, then cosine decay to `end_lr_factor * peak` (or constant)."""
  if optim.schedule not in SCHEDULES:
    raise ConfigError(f"Unknown config.optim.schedule {optim.schedule!r}; valid: {SCHEDULES}.")
  peak = peak_learning_rate(optim, batch_size)
  warmup = min(optim.warmup_steps, total_steps)
  if optim.schedule == "constant":
    after = optax.constant_schedule(peak)
  else:
    after = optax.cosine_decay_schedule(
      peak, max(total_steps - warmup, 1), alpha=optim.end_lr_factor
    )
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def weight_decay_schedule(
  optim: ml_collections.ConfigDict, total_steps: int
) -> float | Callable[[Any], Any]:
  """`weight_decay`, or with `weight_decay_end` >= 0 a cosine ramp between the two over the
  run: end + (start - end) * (1 + cos(pi * t / T)) / 2, as DINO's `cosine_scheduler`."""
  start, end = optim.weight_decay, optim.get("weight_decay_end", -1.0)
  if end < 0:
    return start

  def schedule(step):
    progress = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))

  return schedule


def build_optimizer(
  optim: ml_collections.ConfigDict, total_steps: int, batch_size: int
) -> tuple[optax.GradientTransformation, Callable[[Any], Any]]:
  """Returns (optax transformation, learning-rate schedule) for `config.optim`."""
  schedule = learning_rate_schedule(optim, total_steps, batch_size)
  weight_decay = weight_decay_schedule(optim, total_steps)
  if optim.name == "adamw":
    tx = optax.adamw(
      schedule,
      b1=optim.b1,
      b2=optim.b2,
      eps=optim.eps,
      weight_decay=weight_decay,
      mask=weight_decay_mask,
    )
  elif optim.name == "sgd":
    tx = optax.chain(
      optax.add_decayed_weights(weight_decay, mask=weight_decay_mask),
      optax.sgd(schedule, momentum=optim.momentum or None, nesterov=optim.nesterov),
    )
  elif optim.name == "lars":
    if callable(weight_decay):
      raise ConfigError(
        "config.optim.weight_decay_end (a weight-decay ramp) works with adamw and "
        "sgd; optax's lars takes a constant weight_decay."
      )
    tx = optax.lars(
      schedule,
      weight_decay=optim.weight_decay,
      weight_decay_mask=weight_decay_mask,
      trust_ratio_mask=weight_decay_mask,
      trust_coefficient=optim.trust_coefficient,
      momentum=optim.momentum,
      nesterov=optim.nesterov,
    )
  else:
    raise ConfigError(f"Unknown optimizer config.optim.name={optim.name!r}; valid: {OPTIMIZERS}.")
  if optim.clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(optim.clip_norm), tx)
  return tx, schedule

"""Reward estimators behind one switch (OpenRLHF's `advantage_estimator`): how the rewards of
G completions per prompt become one advantage per completion, and where the KL to the
reference goes. `config.task_kwargs.estimator = {"name": "rloo", ...options}`.

Options every estimator takes:
  loss_type: grpo | dapo | dr_grpo (`policy_loss.normalise`);
  clip_epsilon: PPO's ratio clip, active when a batch of samples is reused;
  updates_per_batch: optimizer updates per batch of samples (1: always fresh samples);
  kl_in: "reward" (a sequence-level KL, not differentiated, subtracted from each completion's
    reward before the advantages: RLOO / REINFORCE as in TRL's RLOO) or "loss" (a per-token KL
    term with its gradient added to the loss: GRPO);
  kl_estimator: k1 | k3 (`policy_loss.kl_per_token`).
A new estimator is a subclass with `advantages` registered under a name here.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ssl_jax.errors import ConfigError
from ssl_jax.registry import Part, Registry
from ssl_jax.rewards.policy_loss import KL_ESTIMATORS, LOSS_TYPES

ESTIMATORS: Registry[Any] = Registry("estimator")
KL_PLACES = ("reward", "loss")


class Estimator(Part):
  """Advantages from rewards [B, G] (B prompts, G completions each)."""

  modalities = ("text",)  # completions of a language model

  # The fewest completions per prompt the baseline needs (task_kwargs.group_size).
  min_group_size: ClassVar[int] = 1

  def __init__(
    self,
    loss_type: str = "grpo",
    clip_epsilon: float = 0.2,
    updates_per_batch: int = 1,
    kl_in: str = "loss",
    kl_estimator: str = "k3",
  ):
    self.validate_options(
      dict(
        loss_type=loss_type,
        updates_per_batch=updates_per_batch,
        kl_in=kl_in,
        kl_estimator=kl_estimator,
        clip_epsilon=clip_epsilon,
      )
    )
    self.loss_type = loss_type
    self.clip_epsilon = float(clip_epsilon)
    self.updates_per_batch = int(updates_per_batch)
    self.kl_in = kl_in
    self.kl_estimator = kl_estimator

  @classmethod
  def validate_options(cls, options: dict[str, Any]) -> None:
    """Names among their choices, before any work (the registry calls this)."""
    for key, choices in (
      ("loss_type", LOSS_TYPES),
      ("kl_in", KL_PLACES),
      ("kl_estimator", KL_ESTIMATORS),
    ):
      if key in options and options[key] not in choices:
        raise ConfigError(
          f"config.task_kwargs.estimator.{key}={options[key]!r}; valid: {list(choices)}."
        )
    if int(options.get("updates_per_batch", 1)) < 1:
      raise ConfigError(
        "config.task_kwargs.estimator.updates_per_batch must be >= 1, got "
        f"{options['updates_per_batch']!r}."
      )
    if not 0.0 < float(options.get("clip_epsilon", 0.2)) < 1.0:
      raise ConfigError(
        "config.task_kwargs.estimator.clip_epsilon must be in (0, 1), got "
        f"{options['clip_epsilon']!r}."
      )

  @abc.abstractmethod
  def advantages(self, rewards: jax.Array) -> jax.Array:
    """[B, G] advantages of [B, G] rewards (the KL already subtracted when kl_in="reward")."""


@ESTIMATORS.register("reinforce")
class Reinforce(Estimator):
  """REINFORCE with a batch-mean baseline: A = r - mean of every reward in the batch."""

  def __init__(
    self, loss_type="grpo", clip_epsilon=0.2, updates_per_batch=1, kl_in="reward", kl_estimator="k1"
  ):
    super().__init__(loss_type, clip_epsilon, updates_per_batch, kl_in, kl_estimator)

  def advantages(self, rewards):
    return rewards - rewards.mean()


@ESTIMATORS.register("rloo")
class RLOO(Estimator):
  """REINFORCE leave-one-out (Ahmadian et al. 2024): each completion's baseline is the mean
  reward of the other G - 1 completions of its prompt."""

  min_group_size = 2

  def __init__(
    self, loss_type="grpo", clip_epsilon=0.2, updates_per_batch=1, kl_in="reward", kl_estimator="k1"
  ):
    super().__init__(loss_type, clip_epsilon, updates_per_batch, kl_in, kl_estimator)

  def advantages(self, rewards):
    group = rewards.shape[1]
    others = (rewards.sum(1, keepdims=True) - rewards) / (group - 1)
    return rewards - others


@ESTIMATORS.register("grpo")
class GRPO(Estimator):
  """Group-relative advantages (Shao et al. 2024): (r - group mean) / (group std + 1e-4), the
  unbiased std as TRL computes it; `scale_rewards=False` keeps only the centring (Dr. GRPO's
  advice; pair it with loss_type="dr_grpo")."""

  min_group_size = 2

  def __init__(
    self,
    loss_type="grpo",
    clip_epsilon=0.2,
    updates_per_batch=1,
    kl_in="loss",
    kl_estimator="k3",
    scale_rewards: bool = True,
  ):
    super().__init__(loss_type, clip_epsilon, updates_per_batch, kl_in, kl_estimator)
    self.scale_rewards = bool(scale_rewards)

  def advantages(self, rewards):
    centred = rewards - rewards.mean(1, keepdims=True)
    if not self.scale_rewards:
      return centred
    return centred / (jnp.std(rewards, axis=1, ddof=1, keepdims=True) + 1e-4)

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
from typing import Annotated, Any, ClassVar

import jax
import jax.numpy as jnp

from ssl_jax.registry import Part, Registry
from ssl_jax.rewards.policy_loss import KL_ESTIMATORS, LOSS_TYPES
from ssl_jax.value_checks import OneOf, Range

ESTIMATORS: Registry[Any] = Registry("estimator")
KL_PLACES = ("reward", "loss")
# The options every estimator takes, with the values each accepts (checked before any work).
LossType = Annotated[str, OneOf(LOSS_TYPES)]
ClipEpsilon = Annotated[float, Range(0.0, 1.0, low_open=True, high_open=True)]
UpdatesPerBatch = Annotated[int, Range(1)]
KlPlace = Annotated[str, OneOf(KL_PLACES)]
KlEstimator = Annotated[str, OneOf(KL_ESTIMATORS)]


class Estimator(Part):
  """Advantages from rewards [B, G] (B prompts, G completions each)."""

  modalities = ("text",)  # completions of a language model

  # The fewest completions per prompt the baseline needs (task_kwargs.group_size).
  min_group_size: ClassVar[int] = 1

  def __init__(
    self,
    loss_type: LossType = "grpo",
    clip_epsilon: ClipEpsilon = 0.2,
    updates_per_batch: UpdatesPerBatch = 1,
    kl_in: KlPlace = "loss",
    kl_estimator: KlEstimator = "k3",
  ):
    self.loss_type = loss_type
    self.clip_epsilon = float(clip_epsilon)
    self.updates_per_batch = int(updates_per_batch)
    self.kl_in = kl_in
    self.kl_estimator = kl_estimator

  @abc.abstractmethod
  def advantages(self, rewards: jax.Array) -> jax.Array:
    """[B, G] advantages of [B, G] rewards (the KL already subtracted when kl_in="reward")."""


class KLInReward(Estimator):
  """The REINFORCE family's defaults: the KL penalty subtracted from the reward, estimated by
  k1 (log-ratio), as in RLHF's PPO and TRL's RLOO."""

  def __init__(
    self,
    loss_type: LossType = "grpo",
    clip_epsilon: ClipEpsilon = 0.2,
    updates_per_batch: UpdatesPerBatch = 1,
    kl_in: KlPlace = "reward",
    kl_estimator: KlEstimator = "k1",
  ):
    super().__init__(loss_type, clip_epsilon, updates_per_batch, kl_in, kl_estimator)


@ESTIMATORS.register("reinforce")
class Reinforce(KLInReward):
  """REINFORCE with a batch-mean baseline: A = r - mean of every reward in the batch."""

  def advantages(self, rewards):
    return rewards - rewards.mean()


@ESTIMATORS.register("rloo")
class RLOO(KLInReward):
  """REINFORCE leave-one-out (Ahmadian et al. 2024): each completion's baseline is the mean
  reward of the other G - 1 completions of its prompt."""

  min_group_size = 2

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
    loss_type: LossType = "grpo",
    clip_epsilon: ClipEpsilon = 0.2,
    updates_per_batch: UpdatesPerBatch = 1,
    kl_in: KlPlace = "loss",
    kl_estimator: KlEstimator = "k3",
    scale_rewards: bool = True,
  ):
    super().__init__(loss_type, clip_epsilon, updates_per_batch, kl_in, kl_estimator)
    self.scale_rewards = bool(scale_rewards)

  def advantages(self, rewards):
    centred = rewards - rewards.mean(1, keepdims=True)
    if not self.scale_rewards:
      return centred
    return centred / (jnp.std(rewards, axis=1, ddof=1, keepdims=True) + 1e-4)

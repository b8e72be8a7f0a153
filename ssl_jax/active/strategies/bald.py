"""Bayesian strategies on Monte-Carlo dropout samples (Gal et al., 2017; baal's BALD family).

With S dropout masks the model gives p_s(y | x_i); BALD is the mutual information between the
label and the weights,
  I(y; w | x) = H(mean_s p_s) - mean_s H(p_s),
high where the masks disagree (not where each is merely unsure). BatchBALD (Kirsch et al.,
2019) chooses the batch greedily by the mutual information of the joint labels, which
penalizes picking several examples that say the same thing. PowerBALD (Kirsch et al., 2023)
draws the batch with probability proportional to BALD^power (Gumbel top-k), a cheap
diversity that matches BatchBALD in their experiments."""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool, QueryStrategy, top_unlabelled
from ssl_jax.active.strategies.uncertainty import entropy
from ssl_jax.value_checks import Range


@jax.jit
def bald_scores(mc_probs: jax.Array) -> jax.Array:
  """[N] mutual information from [S, N, C] MC-dropout probabilities."""
  mean = jnp.mean(mc_probs, 0)
  return entropy(mean) - jnp.mean(jax.vmap(entropy)(mc_probs), 0)


@QUERY_STRATEGIES.register("bald")
class BaldQuery(QueryStrategy):
  """The highest mutual information."""

  needs = ("mc_probs",)

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    del key
    scores = bald_scores(jnp.asarray(pool.mc_probs, jnp.float32))
    return top_unlabelled(scores, pool.labelled, budget)


@QUERY_STRATEGIES.register("power_bald")
class PowerBaldQuery(QueryStrategy):
  """A draw without replacement with probability proportional to BALD^power."""

  needs = ("mc_probs",)

  def __init__(self, power: Annotated[float, Range(0.0)] = 1.0):
    self.power = power

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    scores = np.asarray(bald_scores(jnp.asarray(pool.mc_probs, jnp.float32)), np.float64)
    log_weight = self.power * np.log(np.maximum(scores, 1e-30))
    gumbel = np.asarray(jax.random.gumbel(key, scores.shape), np.float64)
    return top_unlabelled(log_weight + gumbel, pool.labelled, budget)


@jax.jit
def _joint_entropy_with_each(joint: jax.Array, mc_probs: jax.Array, exact: jax.Array) -> jax.Array:
  """[N] H(y_batch, y_n) for every candidate n (up to a constant once sampled), from the
  batch's [S, M] configuration probabilities and the candidates' [S, N, C]."""
  # p(config m, y_n = c) = mean_s joint[s, m] p_s(c | x_n)
  p = jnp.einsum("sm,snc->nmc", joint, mc_probs) / joint.shape[0]
  plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
  # Exact: the sum over every configuration. Sampled: configurations m drawn from the batch's
  # distribution q, each column scaled to mean_s 1 (so p(m, c) here is p(c | m)); then
  # H = -E_q[sum_c p(c|m) log p(c|m)] - E_q[log q(m)], and the second term is the same for
  # every candidate, so it is left out of the comparison.
  weight = jnp.where(exact, 1.0, 1.0 / joint.shape[1])
  return -jnp.sum(plogp, axis=(1, 2)) * weight


@QUERY_STRATEGIES.register("batch_bald")
class BatchBaldQuery(QueryStrategy):
  """Greedy BatchBALD: each next example maximizes I(y_batch, y_n; w), estimated exactly while
  the batch's label configurations number at most `num_configurations`, then by sampling that
  many configurations (Kirsch et al.'s estimator). Meant for pools of thousands (its cost is
  pool x configurations x classes per choice)."""

  needs = ("mc_probs",)

  def __init__(self, num_configurations: Annotated[int, Range(1)] = 1000):
    self.num_configurations = num_configurations

  def select(self, pool: Pool, budget: int, key: jax.Array) -> np.ndarray:
    mc_probs = jnp.asarray(pool.mc_probs, jnp.float32)  # [S, N, C]
    num_samples = mc_probs.shape[0]
    conditional = np.asarray(jnp.mean(jax.vmap(entropy)(mc_probs), 0), np.float64)  # E_w H
    taken = pool.labelled.copy()
    joint = jnp.ones((num_samples, 1), jnp.float32)  # the empty batch: one configuration
    exact = True
    chosen: list[int] = []
    for k in range(budget):
      joint_entropy = np.asarray(_joint_entropy_with_each(joint, mc_probs, jnp.asarray(exact)))
      scores = joint_entropy - (conditional + sum(conditional[i] for i in chosen))
      best = int(top_unlabelled(scores, taken, 1)[0])
      chosen.append(best)
      taken[best] = True
      joint, exact = _extend(
        joint, mc_probs[:, best], exact, jax.random.fold_in(key, k), self.num_configurations
      )
    return np.asarray(chosen)


def _extend(
  joint: jax.Array, probs_i: jax.Array, exact: bool, key: jax.Array, limit: int
) -> tuple[jax.Array, bool]:
  """The batch's [S, M'] configuration probabilities after adding example i ([S, C]).

  While exact, all M x C configurations (up to `limit`); past it, `limit` of them drawn by
  their probability; once sampled, each configuration extended by a label drawn from its
  conditional p(y_i | configuration) (ancestral sampling keeps them draws of the joint)."""
  if exact:
    extended = (joint[:, :, None] * probs_i[:, None, :]).reshape(joint.shape[0], -1)
    if extended.shape[1] <= limit:
      return extended, True
    weights = jnp.mean(extended, 0)
    draws = jax.random.choice(key, extended.shape[1], (limit,), p=weights / jnp.sum(weights))
    return _unit_columns(extended[:, draws]), False
  conditional = joint.T @ probs_i  # [M, C], unnormalized p(y_i = c | configuration m)
  labels = jax.random.categorical(key, jnp.log(jnp.maximum(conditional, 1e-30)))
  return _unit_columns(joint * probs_i[:, labels]), False


def _unit_columns(joint: jax.Array) -> jax.Array:
  """Each sampled configuration's column scaled to mean_s 1 (products of many probabilities
  would underflow float32 after a few dozen examples)."""
  return joint / jnp.maximum(jnp.mean(joint, 0, keepdims=True), 1e-30)

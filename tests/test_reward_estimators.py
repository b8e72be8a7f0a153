"""Reward fine-tuning's pieces against hand-computed values: advantages of each estimator,
the KL estimators, the loss normalisations, the clipped surrogate, the sampler's
log-probabilities and where gradients go."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.errors import ConfigError
from ssl_jax.models.sampling import completion_log_probs, sample_completions
from ssl_jax.registry import MODELS
from ssl_jax.rewards.estimators import ESTIMATORS
from ssl_jax.rewards.policy_loss import clipped_surrogate, kl_per_token, normalise

REWARDS = jnp.array([[1.0, 0.0, 0.5, 0.5], [2.0, 2.0, 2.0, 2.0]])


def test_rloo_baseline_is_the_mean_of_the_other_completions():
  advantages = np.asarray(ESTIMATORS.build("rloo").advantages(REWARDS))
  # 1 - (0 + .5 + .5)/3, 0 - (1 + .5 + .5)/3, .5 - (1 + 0 + .5)/3; a constant group: 0.
  np.testing.assert_allclose(advantages[0], [2 / 3, -2 / 3, 0.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(advantages[1], 0.0, atol=1e-6)


def test_grpo_normalises_by_the_unbiased_group_std():
  std = np.sqrt((0.25 + 0.25) / 3)  # ddof=1 over (.5, -.5, 0, 0)
  advantages = np.asarray(ESTIMATORS.build("grpo").advantages(REWARDS))
  np.testing.assert_allclose(advantages[0], np.array([0.5, -0.5, 0, 0]) / (std + 1e-4), rtol=1e-5)
  np.testing.assert_allclose(advantages[1], 0.0, atol=1e-6)  # zero variance: no signal
  centred = np.asarray(ESTIMATORS.build("grpo", {"scale_rewards": False}).advantages(REWARDS))
  np.testing.assert_allclose(centred[0], [0.5, -0.5, 0, 0], atol=1e-6)


def test_reinforce_baseline_is_the_batch_mean():
  advantages = np.asarray(ESTIMATORS.build("reinforce").advantages(REWARDS))
  np.testing.assert_allclose(advantages, np.asarray(REWARDS) - 1.25, atol=1e-6)


def test_kl_places_and_estimators_default_as_in_trl():
  assert (
    ESTIMATORS.build("rloo").kl_in == "reward" and ESTIMATORS.build("rloo").kl_estimator == "k1"
  )
  assert ESTIMATORS.build("grpo").kl_in == "loss" and ESTIMATORS.build("grpo").kl_estimator == "k3"
  with pytest.raises(ConfigError, match="loss_type='ppo'.*grpo"):
    ESTIMATORS.build("grpo", {"loss_type": "ppo"})
  with pytest.raises(ConfigError, match="updates_per_batch"):
    ESTIMATORS.build("rloo", {"updates_per_batch": 0})


def test_k1_and_k3_by_hand_and_unbiased_on_samples():
  p, q = jnp.log(jnp.array([0.5])), jnp.log(jnp.array([0.25]))
  np.testing.assert_allclose(kl_per_token(p, q, "k1"), [np.log(2)], rtol=1e-6)
  np.testing.assert_allclose(kl_per_token(p, q, "k3"), [0.5 - np.log(0.5) - 1], rtol=1e-6)
  # Both estimate KL(p || q) from samples of p; k3 is never negative, k1 can be.
  probs_p, probs_q = np.array([0.6, 0.3, 0.1]), np.array([0.2, 0.5, 0.3])
  exact = float((probs_p * np.log(probs_p / probs_q)).sum())
  draws = jax.random.choice(jax.random.key(0), 3, (200_000,), p=jnp.asarray(probs_p))
  logp, logq = jnp.log(probs_p)[draws], jnp.log(probs_q)[draws]
  k1, k3 = kl_per_token(logp, logq, "k1"), kl_per_token(logp, logq, "k3")
  assert abs(float(k1.mean()) - exact) < 0.01 and abs(float(k3.mean()) - exact) < 0.01
  assert float(k3.min()) >= 0 and float(k1.min()) < 0


def test_loss_normalisations_on_a_tiny_batch():
  per_token = jnp.array([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
  mask = jnp.array([[True, True, True], [True, False, False]])
  assert float(normalise(per_token, mask, "grpo")) == pytest.approx((6 / 3 + 4 / 1) / 2)
  assert float(normalise(per_token, mask, "dapo")) == pytest.approx(10 / 4)
  assert float(normalise(per_token, mask, "dr_grpo")) == pytest.approx(10 / 6)


def test_clipped_surrogate_stops_the_gradient_outside_the_trust_region():
  old = jnp.log(jnp.array([[0.5, 0.5, 0.5]]))
  new = jnp.log(jnp.array([[0.5, 0.65, 0.3]]))  # ratios 1, 1.3, 0.6
  advantages = jnp.array([1.0])

  def loss(new):
    per_token, _ = clipped_surrogate(new, old, advantages, 0.2)
    return per_token.sum()

  per_token, clipped = clipped_surrogate(new, old, advantages, 0.2)
  np.testing.assert_allclose(per_token, [[-1.0, -1.2, -0.6]], rtol=1e-5)
  assert clipped.tolist() == [[False, True, False]]  # ratio < 1 - eps with A > 0: not clipped
  grads = jax.grad(loss)(new)
  np.testing.assert_allclose(grads, [[-1.0, 0.0, -0.6]], rtol=1e-5)  # d(-r A)/dlog p = -r A


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_no_gradient_reaches_masked_positions(loss_type):
  log_probs = jnp.log(jnp.full((2, 4), 0.3))
  reference = jnp.log(jnp.full((2, 4), 0.2))
  mask = jnp.array([[True, True, False, False], [True, True, True, True]])

  def loss(log_probs):
    per_token, _ = clipped_surrogate(log_probs, jax.lax.stop_gradient(log_probs), jnp.ones(2), 0.2)
    per_token = per_token + 0.1 * kl_per_token(log_probs, reference, "k3")
    return normalise(per_token, mask, loss_type)

  grads = np.asarray(jax.grad(loss)(log_probs))
  assert np.all(grads[~np.asarray(mask)] == 0) and np.all(grads[np.asarray(mask)] != 0)


@pytest.fixture(scope="module")
def decoder():
  model = MODELS.build("transformer_decoder", dict(vocab_size=11, max_length=16, size="tiny"))
  tokens = jnp.ones((1, 16), jnp.int32)
  params = model.init(jax.random.key(0), tokens, tokens > 0, train=False)["params"]
  return model, params


PROMPTS = jnp.array([[2, 5, 6, 0], [2, 7, 0, 0], [2, 8, 9, 10]])
LENGTHS = jnp.array([3, 2, 4])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_teacher_forced_log_probs_equal_the_samplers(decoder, temperature):
  model, params = decoder
  out = sample_completions(
    model,
    params,
    PROMPTS,
    LENGTHS,
    jax.random.key(3),
    8,
    eos_id=3,
    pad_id=0,
    temperature=temperature,
    banned_ids=(0,),
  )
  mask = np.asarray(out["completion_mask"])
  log_probs, entropy = completion_log_probs(
    model, params, out["tokens"], LENGTHS, out["completions"], (0,), temperature
  )
  np.testing.assert_allclose(
    np.asarray(log_probs)[mask], np.asarray(out["log_probs"])[mask], atol=2e-5
  )
  assert np.all(np.asarray(entropy)[mask] > 0)


def test_completions_follow_each_prompt_and_stop_at_eos(decoder):
  model, params = decoder
  out = jax.tree.map(
    np.asarray,
    sample_completions(
      model, params, PROMPTS, LENGTHS, jax.random.key(1), 10, 3, 0, banned_ids=(0,)
    ),
  )
  saw_eos = False
  for r, length in enumerate(np.asarray(LENGTHS)):
    tokens, mask = out["tokens"][r], out["completion_mask"][r]
    np.testing.assert_array_equal(tokens[:length], np.asarray(PROMPTS)[r, :length])
    count = int(mask.sum())
    assert mask[:count].all() and not mask[count:].any()
    completion = out["completions"][r]
    np.testing.assert_array_equal(completion[:count], tokens[length : length + count])
    assert np.all(completion[count:] == 0) and np.all(tokens[length + count :] == 0)
    assert 0 not in completion[:count]  # padding is banned
    eos = np.flatnonzero(completion[:count] == 3)
    if len(eos):
      saw_eos = True
      assert eos.tolist() == [count - 1]  # the first EOS ends the completion
    else:
      assert count == 10
  assert saw_eos

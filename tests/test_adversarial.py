"""FGSM and PGD stay inside their budget and the valid range, and raise a trained model's loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

from ssl_jax.adapt import adversarial
from ssl_jax.adapt.adversarial import fgsm, pgd, project


@pytest.fixture(scope="module")
def trained():
  """Softmax regression on digits (pixels in [0, 1]), 300 full-batch Adam steps."""
  digits = load_digits()
  x = jnp.asarray(digits.data[:512] / 16.0, jnp.float32)
  y = jnp.asarray(digits.target[:512])
  params = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
  loss = lambda p, x: optax.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"], y).mean()
  tx = optax.adam(0.05)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params, x), state)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  for _ in range(300):
    params, state = step(params, state)
  accuracy = float(((x @ params["w"] + params["b"]).argmax(-1) == y).mean())
  assert accuracy > 0.95
  return x, lambda inputs: loss(params, inputs)


@pytest.mark.parametrize("norm, eps, step_size", [("linf", 0.1, 0.025), ("l2", 1.0, 0.25)])
def test_attacks_stay_in_the_budget_and_raise_the_loss(trained, norm, eps, step_size):
  x, loss_fn = trained
  one_step = fgsm(loss_fn, x, eps, norm)
  many = pgd(loss_fn, x, eps, step_size, steps=10, norm=norm, key=jax.random.key(0))
  for attacked in (one_step, many):
    delta = np.asarray(attacked - x).reshape(len(x), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps + 1e-5
    assert float(attacked.min()) >= 0.0 and float(attacked.max()) <= 1.0
  clean, after_fgsm, after_pgd = loss_fn(x), loss_fn(one_step), loss_fn(many)
  # The loss is convex in x, so even one gradient step must raise it; PGD raises it further.
  assert float(after_fgsm) > float(clean) + 0.1
  assert float(after_pgd) > float(after_fgsm)


def test_projection_and_random_start():
  delta = jnp.asarray([[3.0, 4.0], [0.3, 0.4]])
  np.testing.assert_allclose(project(delta, 1.0, "l2"), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)
  np.testing.assert_allclose(project(delta, 0.35, "linf"), [[0.35, 0.35], [0.3, 0.35]])
  x = jnp.full((4, 8), 0.5)
  flat = lambda inputs: jnp.sum(inputs * 0.0)  # zero gradient: only the random start moves
  start = pgd(flat, x, 0.2, 0.05, steps=3, key=jax.random.key(1))
  assert 0 < float(jnp.abs(start - x).max()) <= 0.2 + 1e-6
  np.testing.assert_array_equal(pgd(flat, x, 0.2, 0.05, steps=3), x)


def test_bad_attack_options_are_named():
  with pytest.raises(ValueError, match=r"Unknown attack norm 'l1'; valid: \['linf', 'l2'\]"):
    fgsm(lambda x: x.sum(), jnp.ones((1, 2)), 0.1, norm="l1")
  with pytest.raises(ValueError, match="eps must be >= 0"):
    pgd(lambda x: x.sum(), jnp.ones((1, 2)), -1.0, 0.1, 2)


def test_freelb_and_embedding_pgd_follow_the_hand_computed_ascent():
  """A linear loss theta . sum(x + delta): every ascent step moves delta by step_size along
  the (masked) gradient, inside the eps ball, and the weights' gradient is FreeLB's average of
  the inputs seen at each step, with no gradient through the perturbation."""
  x = jax.random.normal(jax.random.key(0), (2, 4, 3))
  mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]], jnp.float32)[..., None]
  theta = jax.random.normal(jax.random.key(1), (3,))
  key, eps, step_size, steps = jax.random.key(2), 0.5, 0.2, 3

  def loss_fn(theta):
    return lambda delta: (jnp.sum((x + delta) * theta), delta)

  # The same random start, then the steps by hand.
  direction_key, radius_key = jax.random.split(key)
  direction = jax.random.normal(direction_key, x.shape) * mask
  radius = jax.random.uniform(radius_key, (2, 1, 1))
  norm = lambda d: jnp.sqrt(jnp.sum(d**2, axis=(1, 2), keepdims=True))  # noqa: E731
  deltas = [direction / norm(direction) * radius * eps]
  grad = jnp.broadcast_to(theta, x.shape) * mask
  for _ in range(steps):
    moved = deltas[-1] + step_size * grad / norm(grad)
    deltas.append(moved * jnp.minimum(1.0, eps / norm(moved)))
  losses = [float(jnp.sum((x + d) * theta)) for d in deltas]
  assert losses == sorted(losses)  # every step raises the loss

  for mode, expected_loss, inputs_seen in (
    ("freelb", np.mean(losses[:steps]), deltas[:steps]),
    ("pgd", losses[steps], deltas[steps:]),
  ):
    loss, last = adversarial.embedding_adversarial_loss(
      loss_fn(theta), x.shape, mask, eps, step_size, steps, key, mode
    )
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    assert float(jnp.max(norm(last))) <= eps + 1e-5
    assert float(jnp.abs(last * (1 - mask)).max()) == 0.0  # padding is never perturbed
    weight_grad = jax.grad(
      lambda t: adversarial.embedding_adversarial_loss(
        loss_fn(t), x.shape, mask, eps, step_size, steps, key, mode
      )[0]
    )(theta)
    expected_grad = np.mean([np.sum(x + d, axis=(0, 1)) for d in inputs_seen], axis=0)
    np.testing.assert_allclose(weight_grad, expected_grad, rtol=1e-5)

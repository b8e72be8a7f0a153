"""Pretext losses against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.tasks.simclr import nt_xent


def test_nt_xent_matches_hand_computed_value_on_identical_pairs():
  # Rows i and i+2 are a pair. With temperature 1, row 0 sees cos=1 with its positive and
  # cos=0 with both negatives: loss = -log(e / (e + 1 + 1)) = log(2 + e) - 1 for every row.
  z = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
  loss, accuracy = nt_xent(z, temperature=1.0)
  assert math.isclose(float(loss), math.log(2 + math.e) - 1, rel_tol=1e-6)
  assert float(accuracy) == 1.0


def test_nt_xent_matches_explicit_sum_on_a_4_example_batch():
  z = np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 1.0], [-1.0, 0.5]])
  temperature = 0.5
  unit = z / np.linalg.norm(z, axis=1, keepdims=True)
  # Written out term by term: l_i = -log(exp(s_ip/t) / sum_{k != i} exp(s_ik/t)).
  positive = {0: 2, 1: 3, 2: 0, 3: 1}
  losses = []
  for i in range(4):
    denominator = sum(math.exp(unit[i] @ unit[k] / temperature) for k in range(4) if k != i)
    losses.append(-math.log(math.exp(unit[i] @ unit[positive[i]] / temperature) / denominator))
  loss, _ = nt_xent(jnp.asarray(z), temperature)
  assert math.isclose(float(loss), sum(losses) / 4, rel_tol=1e-5)
  # By hand: rows 0,2 have s_pos=0.8, s_neg={-0.6, 0}: log(1 + (e^-1.2 + 1)/e^1.6) = 0.2333;
  # rows 1,3 have s_pos=-0.8, s_neg={-0.6, 0}: log(1 + (e^-1.2 + 1)/e^-1.6) = 2.0076.
  assert math.isclose(float(loss), (2 * 0.2333 + 2 * 2.0076) / 4, abs_tol=2e-4)


def test_nt_xent_is_invariant_to_embedding_scale_and_has_gradients():
  z = jax.random.normal(jax.random.key(0), (8, 4))
  loss, _ = nt_xent(z, 0.1)
  scaled, _ = nt_xent(3.0 * z, 0.1)
  np.testing.assert_allclose(loss, scaled, rtol=1e-5)
  grad = jax.grad(lambda x: nt_xent(x, 0.1)[0])(z)
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).sum()) > 0

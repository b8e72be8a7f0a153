"""FixMatch pseudo-labels respect the confidence threshold and stop the weak view's gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.adapt.semi_supervised import pseudo_label_loss, pseudo_labels


def test_pseudo_labels_keep_only_confident_predictions():
  # Softmax max-probabilities: row 0 ~0.99, row 1 exactly 0.5, row 2 ~0.84, row 3 uniform.
  weak = jnp.asarray([[6.0, 1.0, 0.0], [0.0, jnp.log(2.0), 0.0], [0.0, 0.0, 2.5], [1.0, 1.0, 1.0]])
  probs = np.asarray(jax.nn.softmax(weak))
  for threshold in (0.3, 0.5, 0.8, 0.95):
    labels, mask = pseudo_labels(weak, threshold)
    np.testing.assert_array_equal(labels[:3], [0, 1, 2])
    np.testing.assert_array_equal(mask, (probs.max(1) >= threshold).astype(np.float32))
  _, mask = pseudo_labels(weak, 0.95)
  np.testing.assert_array_equal(mask, [1, 0, 0, 0])
  with pytest.raises(ValueError, match=r"in \[0, 1\]; got 1.5"):
    pseudo_labels(weak, 1.5)


def test_loss_is_the_masked_cross_entropy_over_the_batch_and_weak_view_gets_no_gradient():
  weak = jnp.asarray([[6.0, 1.0, 0.0], [0.0, 0.1, 0.0]])
  strong = jnp.asarray([[1.0, 2.0, 0.5], [3.0, 0.0, 0.0]])
  loss, metrics = pseudo_label_loss(weak, strong, threshold=0.9)
  # Only row 0 is confident (label 0); the mean is over both rows.
  expected = -float(jax.nn.log_softmax(strong[0])[0]) / 2
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(metrics["pseudo_label_rate"], 0.5)
  weak_grad, strong_grad = jax.grad(lambda w, s: pseudo_label_loss(w, s, 0.9)[0], argnums=(0, 1))(
    weak, strong
  )
  np.testing.assert_array_equal(weak_grad, 0.0)
  np.testing.assert_array_equal(strong_grad[1], 0.0)  # below the threshold: no signal
  assert float(jnp.abs(strong_grad[0]).sum()) > 0

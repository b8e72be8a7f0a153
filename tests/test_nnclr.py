"""NNCLR: the loss against a hand computation, nearest neighbours from the support queue, and
the queue's first-in-first-out update through the train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

from ssl_jax import parallel, train
from ssl_jax.registry import ConfigError
from ssl_jax.tasks import nnclr

RNG = np.random.default_rng(0)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_loss_is_infonce_of_neighbours_against_the_other_views_predictions():
  neighbours, predictions = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))
  logits = _unit(neighbours) @ _unit(predictions).T / 0.2
  log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  expected = -np.mean(np.diag(log_softmax))
  loss = nnclr.nnclr_loss(jnp.asarray(neighbours), jnp.asarray(predictions), 0.2)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_nearest_neighbour_is_the_most_similar_queue_row_and_carries_no_gradient():
  queue = _unit(RNG.normal(size=(16, 4)))
  embeddings = _unit(queue[[3, 11, 7]] + 0.01 * RNG.normal(size=(3, 4)))
  found = nnclr.nearest_neighbours(jnp.asarray(embeddings), jnp.asarray(queue))
  np.testing.assert_allclose(found, queue[[3, 11, 7]], rtol=1e-6)
  grad = jax.grad(lambda q: nnclr.nearest_neighbours(jnp.asarray(embeddings), q).sum())(
    jnp.asarray(queue)
  )
  assert not np.asarray(grad).any()


def test_enqueue_replaces_the_oldest_rows_and_wraps():
  queue = jnp.zeros((6, 2))
  batch = jnp.ones((2, 2))
  queue, pointer = nnclr.enqueue(queue, jnp.int32(4), batch)
  np.testing.assert_array_equal(queue[4:], 1.0)
  np.testing.assert_array_equal(queue[:4], 0.0)
  assert int(pointer) == 0
  queue, pointer = nnclr.enqueue(queue, pointer, 2 * batch)
  np.testing.assert_array_equal(queue[:2], 2.0)
  assert int(pointer) == 2


def _tiny_config():
  config = load_config("nnclr_digits")
  config.task_kwargs.update(
    dict(queue_size=64, projector_hidden_dim=16, projector_dim=8, predictor_hidden_dim=16)
  )
  config.model_kwargs.update(dict(stage_sizes=(1,), width=8))
  config.batch_size = 32
  config.optim.warmup_steps = 0
  return config


@pytest.mark.e2e
def test_train_steps_fill_the_queue_with_normalised_embeddings(devices):
  config = _tiny_config()
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
    before = jax.device_get(run.state.model_state)
    state, metrics = run.train_step(run.state, run.example)
    after = jax.device_get(state.model_state)
    state, _ = run.train_step(state, run.example)
    last = jax.device_get(state.model_state)
  assert np.isfinite(float(metrics["loss"])) and 0.0 <= float(metrics["neighbour_agreement"]) <= 1
  queue_before, queue_after = before[nnclr.QUEUE], after[nnclr.QUEUE]
  np.testing.assert_allclose(np.linalg.norm(queue_before, axis=1), 1.0, rtol=1e-5)
  # Step 1 wrote its 32 view-1 embeddings (unit vectors) into rows 0-31; rows 32-63 are as
  # initialised; step 2 wrote rows 32-63 and the pointer wrapped.
  assert int(after[nnclr.POINTER]) == 32 and int(last[nnclr.POINTER]) == 0
  assert not np.allclose(queue_after[:32], queue_before[:32])
  np.testing.assert_array_equal(queue_after[32:], queue_before[32:])
  np.testing.assert_allclose(np.linalg.norm(queue_after[:32], axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(last[nnclr.QUEUE][:32], queue_after[:32])
  assert not np.allclose(last[nnclr.QUEUE][32:], queue_before[32:])


def test_queue_size_must_be_a_multiple_of_the_batch():
  config = _tiny_config()
  config.task_kwargs.queue_size = 48
  with pytest.raises(ConfigError, match="queue_size=48 must be a positive multiple.*batch_size=32"):
    train.build_task(config, train.build_dataset(config, None))

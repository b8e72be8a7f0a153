"""Evaluators: the probe solver against scikit-learn, kNN votes, label draws."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from conftest import tiny_simclr_config
from sklearn.linear_model import LogisticRegression

from ssl_jax import parallel, train
from ssl_jax.evals.context import labelled_subsets
from ssl_jax.evals.knn import knn_predict
from ssl_jax.evals.linear_probe import fit_logistic_regression, probe_accuracy
from ssl_jax.evals.masked_lm import most_frequent_token


def _blobs(n=120, d=5, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, n)
  features = rng.normal(size=(n, d)) + 1.5 * np.eye(classes, d)[labels]
  return features.astype(np.float32), labels.astype(np.int32)


def test_logistic_regression_matches_sklearn_optimum():
  x, y = _blobs()
  w, b = fit_logistic_regression(jnp.asarray(x), jnp.asarray(y), jnp.ones(len(y)), 1.0, 3)
  reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(x, y)
  np.testing.assert_allclose(np.asarray(w).T, reference.coef_, atol=2e-3)
  # sklearn's intercepts are only defined up to a shared constant with softmax.
  np.testing.assert_allclose(
    np.asarray(b) - np.mean(b), reference.intercept_ - reference.intercept_.mean(), atol=2e-3
  )


def test_zero_weights_equal_fitting_on_the_subset():
  x, y = _blobs()
  weights = np.zeros(len(y), np.float32)
  weights[:30] = 1.0
  masked = fit_logistic_regression(jnp.asarray(x), jnp.asarray(y), jnp.asarray(weights), 1.0, 3)
  subset = fit_logistic_regression(jnp.asarray(x[:30]), jnp.asarray(y[:30]), jnp.ones(30), 1.0, 3)
  for a, b in zip(masked, subset):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_probe_accuracy_is_high_on_separable_data():
  x, y = _blobs(n=400, seed=1)
  x = x + 3.0 * np.eye(3, 5)[y]
  accuracy = probe_accuracy(
    x[:300], y[:300], x[300:], y[300:], np.ones((2, 300), np.float32), 1.0, 200
  )
  assert accuracy.shape == (2,) and np.all(accuracy > 0.95)


def test_labelled_subsets_draw_k_per_class_and_differ_between_draws():
  labels = np.repeat(np.arange(4), 10)
  weights = labelled_subsets(labels, 3, draws=5, seed=0)
  for row in weights:
    np.testing.assert_array_equal(np.bincount(labels[row > 0]), [3, 3, 3, 3])
  assert len({tuple(row) for row in weights}) > 1
  np.testing.assert_array_equal(labelled_subsets(labels, 0, 2, 0), 1.0)


def test_knn_temperature_weighted_votes():
  train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)
  labels = np.array([0, 0, 1])
  test = np.array([[0.2, 1.0], [1.0, 0.05]], np.float32)
  np.testing.assert_array_equal(
    knn_predict(train, labels, test, k=3, temperature=0.1, num_classes=2), [1, 0]
  )
  # With k=2 the query near [0, 1] still has neighbours 2 (label 1) and 1 (label 0); the
  # closer one wins because its weight exp(sim/T) is larger.
  np.testing.assert_array_equal(
    knn_predict(train, labels, test[:1], k=2, temperature=0.1, num_classes=2), [1]
  )
  # Two far neighbours of class 0 outvote one near neighbour of class 1 at a high temperature.
  query = np.array([[0.6, 0.8]], np.float32)
  assert knn_predict(train, labels, query, k=3, temperature=100.0, num_classes=2)[0] == 0
  assert knn_predict(train, labels, query, k=3, temperature=0.01, num_classes=2)[0] == 1


def test_most_frequent_token_ignores_specials():
  tokens = np.array([[2, 0, 0, 0, 7, 7, 9]])
  assert most_frequent_token(tokens, (0, 2, 3, 4), 10) == 7


def test_results_table_merges_rows_across_evaluators():
  from ssl_jax.metrics import format_results_table

  table = format_results_table(
    {
      "linear_probe": {
        "simclr": {"acc@1/class": {"mean": 0.5, "std": 0.25}},
        "raw pixels": {"acc@1/class": {"mean": 0.4, "std": 0.0}},
      },
      "knn": {"simclr": {"knn acc": 0.9}},
      "masked_lm": {"mlm": {"masked loss": 2.5}},
    }
  )
  assert table.splitlines() == [
    "| | acc@1/class | knn acc | masked loss |",
    "|---|---|---|---|",
    "| simclr | 50.0 ± 25.0 | 90.0 |  |",
    "| raw pixels | 40.0 ± 0.0 |  |  |",
    "| mlm |  |  | 2.5000 |",
  ]


def test_progress_line_shows_step_loss_lr_throughput_and_eta(tmp_path):
  import io

  from ssl_jax.metrics import MetricWriter

  stream = io.StringIO()
  writer = MetricWriter(str(tmp_path), total_steps=100, stream=stream)
  writer.progress(
    40,
    {
      "grad_norm": 0.5,
      "loss": 2.0,
      "learning_rate": 1e-3,
      "examples_per_second": 512.0,
      "steps_per_second": 2.0,
    },
    2.0,
  )
  writer.close()
  assert stream.getvalue().strip() == (
    "step 40/100 | loss 2.0000 | grad_norm 0.5000 | lr 1.00e-03 | 512 ex/s | ETA 0m30s"
  )


# --- Full fine-tuning --------------------------------------------------------------------------


def test_fine_tune_updates_every_encoder_weight_and_learns(tmp_path):
  """The fine-tune evaluator trains encoder + head end to end: a from-scratch ResNet reaches
  well above chance on digits in 60 steps, and the step changes encoder weights and BN stats."""
  from ssl_jax.data.augment import AugmentConfig
  from ssl_jax.evals import fine_tune as fine_tune_lib
  from ssl_jax.models.heads import LinearClassifier

  config = tiny_simclr_config(total_steps=1)
  config.model_kwargs.width = 16
  config.evals = {
    "fine_tune": {
      "steps": 60,
      "batch_size": 64,
      "warmup_steps": 5,
      "learning_rate": 1e-2,
      "feature_sets": ("trained",),
    }
  }
  results = train.train_and_evaluate(config, str(tmp_path))
  accuracy = results["evals"]["fine_tune"]["simclr (fine-tuned)"]["acc@all"]["mean"]
  # Chance is 0.1; this tiny net from (almost) scratch reaches ~0.53 after 60 steps.
  assert accuracy > 0.4, accuracy

  # One step by hand: every encoder leaf moves, batch statistics update, the loss drops.
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
  encoder = run.task.encoder_variables(*jax.device_get((run.state.params, run.state.model_state)))
  head = LinearClassifier(10).init(jax.random.key(0), jnp.zeros((1, 16)))
  tx = optax.adam(1e-2)
  step = jax.jit(
    fine_tune_lib._make_step(
      run.task.encoder,
      LinearClassifier(10),
      tx,
      AugmentConfig(crop_scale=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0),
    )
  )
  state = fine_tune_lib._initial_state(encoder, head, tx)
  before = jax.device_get(state)
  batch = {k: jnp.asarray(v[:64]) for k, v in run.dataset.split("train").items()}
  losses = []
  for i in range(40):
    state, loss = step(state, batch, jax.random.key_data(jax.random.key(i)))
    losses.append(float(loss))
  moved = jax.tree.map(
    lambda a, b: not np.allclose(a, b),
    before["params"]["encoder"],
    jax.device_get(state["params"]["encoder"]),
  )
  assert all(jax.tree.leaves(moved))
  stats_moved = jax.tree.map(
    lambda a, b: not np.allclose(a, b), before["model_state"], jax.device_get(state["model_state"])
  )
  assert all(jax.tree.leaves(stats_moved))
  assert losses[-1] < 0.5 * losses[0]

"""Evaluators: the probe solver against scikit-learn, kNN votes, label draws."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_simclr_config
from sklearn.linear_model import LogisticRegression

from ssl_jax import train
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
    "| raw pixels | 40.0 |  |  |",
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


# --- Periodic evaluation -----------------------------------------------------------------------


@pytest.mark.e2e
def test_periodic_evaluator_writes_its_curve_to_metrics_and_tensorboard(tmp_path):
  """config.evals.knn.every=2 on a 6-step run: kNN accuracy at steps 2, 4 and 6 (the last from
  the final evaluation, equal to results.json), in metrics.jsonl and TensorBoard."""
  import json

  config = tiny_simclr_config(total_steps=6, log_every=3, checkpoint_every=6)
  config.evals = {"knn": {"every": 2, "feature_sets": ("trained",)}}
  results = train.train_and_evaluate(config, str(tmp_path))
  key = "knn/simclr/knn acc (k=20)"
  with open(tmp_path / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  curve = {r["step"]: r[key] for r in records if key in r}
  assert sorted(curve) == [2, 4, 6]
  assert curve[6] == results["evals"]["knn"]["simclr"]["knn acc (k=20)"]
  assert all(0.0 <= v <= 1.0 for v in curve.values())
  # The training metrics are still logged at their own interval.
  assert [r["step"] for r in records if "loss" in r] == [3, 6]
  # TensorBoard keeps [A-Za-z0-9_./-] of a tag and turns the rest into "_".
  tag = "knn/simclr/knn_acc__k_20_"
  assert sorted(_tensorboard_scalars(tmp_path / "tensorboard", tag)) == sorted(curve.items())


def _tensorboard_scalars(directory, tag):
  """[(step, value)] of `tag` in the event files under `directory` (TFRecord framing:
  length, its crc, the Event proto, its crc)."""
  import struct

  from tensorboardX.proto import event_pb2

  found = []
  for path in sorted(directory.iterdir()):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset : offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        if value.tag == tag:
          found.append((event.step, pytest.approx(value.simple_value, abs=1e-6)))
  return found

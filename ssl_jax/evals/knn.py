"""Weighted k-nearest-neighbour classification on frozen features (Wu et al., 2018)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.capabilities import Represents
from ssl_jax.evals.context import FEATURE_SETS, TRAINED, EvalContext, check_feature_sets
from ssl_jax.progress import Progress
from ssl_jax.registry import EVALUATORS


@jax.jit
def _normalize(x: jnp.ndarray) -> jnp.ndarray:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _chunk_predictions(train_x, train_y, test_x, k, temperature, num_classes):
  similarity, index = jax.lax.top_k(test_x @ train_x.T, k)
  votes = jax.nn.one_hot(train_y[index], num_classes)
  scores = jnp.sum(votes * jnp.exp(similarity / temperature)[..., None], axis=1)
  return jnp.argmax(scores, -1)


def knn_predict(
  train_x: np.ndarray,
  train_y: np.ndarray,
  test_x: np.ndarray,
  k: int,
  temperature: float,
  num_classes: int,
  chunk: int = 1024,
  label: str = "kNN",
) -> np.ndarray:
  """Cosine-similarity kNN; each of the k neighbours votes with weight exp(sim / temperature).

  Queries go `chunk` at a time (the last one padded, so one compiled program serves all), so
  memory holds a [chunk, N_train] similarity block, not [N_test, N_train]; a long pass shows
  progress."""
  train_x, test_x = _normalize(jnp.asarray(train_x)), _normalize(jnp.asarray(test_x))
  train_y = jnp.asarray(train_y)
  k = min(k, len(train_x))
  chunk = max(1, min(chunk, len(test_x)))
  predictions = []
  with Progress(label, -(-len(test_x) // chunk)) as progress:
    for start in range(0, len(test_x), chunk):
      queries = test_x[start : start + chunk]
      count = len(queries)
      if count < chunk:
        queries = jnp.pad(queries, ((0, chunk - count), (0, 0)))
      found = _chunk_predictions(train_x, train_y, queries, k, temperature, num_classes)
      predictions.append(np.asarray(found)[:count])
      progress.advance()
  return np.concatenate(predictions) if predictions else np.zeros((0,), np.int32)


@EVALUATORS.register("knn", requires=(Represents,), check=check_feature_sets)
def knn(
  ctx: EvalContext,
  k: int = 20,
  temperature: float = 0.07,
  feature_sets: Sequence[str] = FEATURE_SETS,
  train_split: str = "train",
  test_split: str = "test",
) -> dict[str, dict[str, float]]:
  """kNN accuracy with every train label. Defaults k=20, T=0.07 follow solo-learn and
  InstDisc; lightly's benchmarks use k=200, T=0.1 on larger datasets."""
  train_y, test_y = ctx.labels(train_split), ctx.labels(test_split)
  num_classes = int(max(train_y.max(), test_y.max())) + 1
  table = {}
  for feature_set in (TRAINED, *[f for f in feature_sets if f != TRAINED]):
    predictions = knn_predict(
      ctx.features(feature_set, train_split),
      train_y,
      ctx.features(feature_set, test_split),
      k,
      temperature,
      num_classes,
      label=f"{ctx.name}: kNN on {ctx.row_name(feature_set)}",
    )
    table[ctx.row_name(feature_set)] = {f"knn acc (k={k})": float(np.mean(predictions == test_y))}
  return table

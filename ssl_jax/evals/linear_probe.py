"""Linear probe: multinomial logistic regression on frozen features at several label budgets."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.capabilities import Represents
from ssl_jax.evals.context import (
  FEATURE_SETS,
  TRAINED,
  EvalContext,
  check_feature_sets,
  labelled_subsets,
)
from ssl_jax.progress import Progress
from ssl_jax.registry import EVALUATORS


@functools.partial(jax.jit, static_argnames=("num_classes", "max_iterations"))
def fit_logistic_regression(
  features: jnp.ndarray,
  labels: jnp.ndarray,
  weights: jnp.ndarray,
  l2: float,
  num_classes: int,
  max_iterations: int = 500,
  tolerance: float = 1e-4,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Minimises sum_i w_i * CE_i + l2/2 * |W|^2 with L-BFGS (sklearn's objective, C = 1/l2),
  until the gradient norm falls below `tolerance` or after `max_iterations`.

  Selecting labelled examples by 0/1 `weights` keeps one static shape for every label budget,
  so a single compiled solver serves 1, 5, 10 and all labels per class.
  """
  targets = jax.nn.one_hot(labels, num_classes)

  def objective(params):
    w, b = params
    log_probs = jax.nn.log_softmax(features @ w + b)
    return -jnp.sum(weights * jnp.sum(targets * log_probs, -1)) + 0.5 * l2 * jnp.sum(w * w)

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    params, state, iteration, _ = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=objective)
    return (optax.apply_updates(params, updates), state, iteration + 1, optax.tree.norm(grad))

  def not_done(carry):
    _, _, iteration, grad_norm = carry
    return (iteration < max_iterations) & (grad_norm > tolerance)

  params = (jnp.zeros((features.shape[1], num_classes)), jnp.zeros((num_classes,)))
  init = (params, solver.init(params), jnp.zeros((), jnp.int32), jnp.array(jnp.inf))
  params, _, _, _ = jax.lax.while_loop(not_done, step, init)
  return params


_fit_draws = jax.jit(
  jax.vmap(fit_logistic_regression, in_axes=(None, None, 0, None, None, None)),
  static_argnums=(4, 5),
)


def probe_accuracy(
  train_x: np.ndarray,
  train_y: np.ndarray,
  test_x: np.ndarray,
  test_y: np.ndarray,
  weights: np.ndarray,
  l2: float,
  max_iterations: int,
) -> np.ndarray:
  """Test accuracy of one probe per row of `weights` [draws, N]; features are standardised
  with the statistics of the whole (unlabelled) train split."""
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  num_classes = int(max(train_y.max(), test_y.max())) + 1
  w, b = _fit_draws(
    jnp.asarray(train_x),
    jnp.asarray(train_y),
    jnp.asarray(weights),
    l2,
    num_classes,
    max_iterations,
  )
  predictions = jnp.argmax(jnp.einsum("nd,rdc->rnc", test_x, w) + b[:, None], -1)
  return np.asarray(jnp.mean(predictions == test_y, axis=-1))


@EVALUATORS.register("linear_probe", requires=(Represents,), check=check_feature_sets)
def linear_probe(
  ctx: EvalContext,
  labels_per_class: Sequence[int] = (1, 5, 10, 0),
  draws: int = 5,
  l2: float = 1.0,
  max_iterations: int = 500,
  feature_sets: Sequence[str] = FEATURE_SETS,
  train_split: str = "train",
  test_split: str = "test",
) -> dict[str, dict[str, dict[str, float]]]:
  """Probe accuracy (mean and std over `draws` label draws) per feature set and label budget.

  Args:
    labels_per_class: label budgets; 0 means every train label.
    draws: independent label draws per budget.
    l2: L2 penalty on the weights (sklearn's 1/C).
    max_iterations: L-BFGS iteration cap (it stops earlier once converged).
    feature_sets: any of "trained", "random_init", "raw_pixels".
  """
  train_y, test_y = ctx.labels(train_split), ctx.labels(test_split)
  table = {}
  sets = (TRAINED, *[f for f in feature_sets if f != TRAINED])
  progress = Progress(f"{ctx.name}: linear probe solves", len(sets))
  for feature_set in sets:
    train_x = ctx.features(feature_set, train_split)
    test_x = ctx.features(feature_set, test_split)
    # One solve for every (budget, draw); "all labels" needs a single draw.
    weights = np.concatenate(
      [labelled_subsets(train_y, k, draws if k else 1, ctx.seed) for k in labels_per_class]
    )
    accuracy = probe_accuracy(train_x, train_y, test_x, test_y, weights, l2, max_iterations)
    row, offset = {}, 0
    for per_class in labels_per_class:
      count = draws if per_class else 1
      column = f"acc@{per_class}/class" if per_class else "acc@all"
      values = accuracy[offset : offset + count]
      row[column] = {"mean": float(values.mean()), "std": float(values.std())}
      offset += count
    table[ctx.row_name(feature_set)] = row
    progress.advance()
  return table

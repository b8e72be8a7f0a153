"""Full fine-tuning: the pretrained encoder plus a new linear head, trained end to end on labels.

The protocol of MAE/BEiT-style evaluation at small scale: every encoder weight is updated (the
head from zero init), with light on-device augmentation (random resized crop and flip), AdamW,
warmup and cosine decay, batch statistics updated in train mode. The "random_init" row trains
the same network from the run's initial weights: the from-scratch baseline the pretraining has
to beat.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax import parallel
from ssl_jax.config_base import base_config
from ssl_jax.data.augment import AugmentConfig, augment_batch
from ssl_jax.data.records import take_rows
from ssl_jax.data.source import unit_float_images
from ssl_jax.evals.context import (
  RANDOM_INIT,
  TRAINED,
  EvalContext,
  check_feature_sets,
  labelled_subsets,
)
from ssl_jax.models.heads import LinearClassifier
from ssl_jax.optim import build_optimizer
from ssl_jax.registry import EVALUATORS, ConfigError

FEATURE_SETS = (TRAINED, RANDOM_INIT)


@EVALUATORS.register("fine_tune")
def fine_tune(
  ctx: EvalContext,
  labels_per_class: Sequence[int] = (0,),
  draws: int = 1,
  steps: int = 500,
  batch_size: int = 128,
  learning_rate: float = 1e-3,
  weight_decay: float = 0.05,
  warmup_steps: int = 50,
  crop_scale: Sequence[float] = (0.35, 1.0),
  flip_prob: float = 0.0,
  feature_sets: Sequence[str] = FEATURE_SETS,
  train_split: str = "train",
  test_split: str = "test",
) -> dict[str, dict[str, dict[str, float]]]:
  """Test accuracy after fine-tuning, mean and std over `draws`, per label budget.

  Args:
    labels_per_class: label budgets; 0 means every train label.
    draws: label draws (and head inits) per budget.
    steps, batch_size: optimisation length; batches are drawn with replacement from the
      labelled subset, so small budgets keep the same static shape.
    learning_rate, weight_decay, warmup_steps: AdamW with warmup and cosine decay.
    crop_scale, flip_prob: the training augmentation (no colour jitter).
    feature_sets: "trained" (the pretrained encoder) and/or "random_init" (from scratch).
  """
  task = ctx.task
  if not hasattr(task, "encoder_variables"):
    raise ConfigError(f"fine_tune needs an image encoder; task {ctx.name!r} has none.")
  if batch_size % ctx.mesh.size:
    raise ConfigError(
      f"fine_tune batch_size={batch_size} is not divisible by the {ctx.mesh.size} devices."
    )
  train_y, test_y = ctx.labels(train_split), ctx.labels(test_split)
  num_classes = int(ctx.dataset.info.get("num_classes") or train_y.max() + 1)
  optim = ml_collections.ConfigDict(base_config().optim.to_dict())
  optim.update(
    name="adamw",
    learning_rate=learning_rate,
    weight_decay=weight_decay,
    warmup_steps=warmup_steps,
    lr_scaling="none",
    schedule="cosine",
  )
  tx, _ = build_optimizer(optim, steps, batch_size)
  step_fn = _make_step(
    task.encoder,
    LinearClassifier(num_classes),
    tx,
    AugmentConfig(
      crop_scale=tuple(crop_scale),
      flip_prob=flip_prob,
      brightness=0.0,
      contrast=0.0,
      jitter_prob=0.0,
    ),
  )
  replicated, batch_sharding = parallel.replicated(ctx.mesh), parallel.batch_sharding(ctx.mesh)
  step_fn = jax.jit(
    step_fn,
    in_shardings=(replicated, batch_sharding, replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
  )
  predict = ctx.jit(functools.partial(_predict, task.encoder, LinearClassifier(num_classes)))
  train_split_data = ctx.dataset.split(train_split)

  table = {}
  for feature_set in (TRAINED, *[f for f in feature_sets if f != TRAINED]):
    variables = ctx.variables if feature_set == TRAINED else ctx.initial_variables()
    encoder = task.encoder_variables(*variables)
    feature_dim = _feature_dim(task, encoder, train_split_data)
    row = {}
    for per_class in labels_per_class:
      accuracies = []
      count = draws if per_class else 1
      subsets = labelled_subsets(train_y, per_class, count, ctx.seed)
      for draw, weights in enumerate(subsets):
        labelled = np.flatnonzero((weights > 0) & (train_y >= 0))
        rng = np.random.default_rng([ctx.seed, per_class, draw])
        key = jax.random.key(int(rng.integers(2**31)))
        head = LinearClassifier(num_classes).init(key, jnp.zeros((1, feature_dim)))
        state = jax.device_put(_initial_state(encoder, head, tx), replicated)
        for step in range(steps):
          index = rng.choice(labelled, batch_size)
          batch = parallel.global_batch(_local(train_split_data, index), batch_sharding)
          state, _ = step_fn(state, batch, jax.random.key_data(jax.random.fold_in(key, step)))
        logits = ctx.apply(
          predict, (state["params"], state["model_state"]), ctx.dataset.split(test_split)
        )
        accuracies.append(float(np.mean(np.argmax(logits, -1) == test_y)))
      column = f"acc@{per_class}/class" if per_class else "acc@all"
      row[column] = {"mean": float(np.mean(accuracies)), "std": float(np.std(accuracies))}
    table[ctx.row_name(feature_set) + " (fine-tuned)"] = row
  return table


fine_tune.validate_options = functools.partial(check_feature_sets, valid=FEATURE_SETS)


def _local(split, index: np.ndarray) -> dict[str, np.ndarray]:
  """This process's slice of the batch at `index` (every process draws the same indices)."""
  size = len(index) // jax.process_count()
  mine = index[jax.process_index() * size : (jax.process_index() + 1) * size]
  rows = take_rows(split, mine)
  return {"image": rows["image"], "label": rows["label"]}


def _feature_dim(task, encoder_variables, split) -> int:
  image = unit_float_images({"image": np.asarray(split["image"][:1])})["image"]
  out = jax.eval_shape(
    lambda v, x: task.encoder.apply(v, x, train=False),
    encoder_variables,
    jax.ShapeDtypeStruct(image.shape, image.dtype),
  )
  return out.shape[-1]


def _initial_state(
  encoder: dict[str, Any], head: dict[str, Any], tx: optax.GradientTransformation
) -> dict[str, Any]:
  params = {"encoder": encoder["params"], "head": head["params"]}
  model_state = {k: v for k, v in encoder.items() if k != "params"}
  # Copies, so donation never invalidates the run's own variables (shared by other rows).
  params, model_state = jax.tree.map(jnp.array, (params, model_state))
  return {"params": params, "model_state": model_state, "opt_state": tx.init(params)}


def _make_step(
  encoder_module, head_module, tx: optax.GradientTransformation, augment: AugmentConfig
):
  def step(state, batch, key_data):
    key = jax.random.wrap_key_data(key_data)
    images = augment_batch(key, unit_float_images(batch)["image"], augment)
    collections = list(state["model_state"])

    def loss_of(params):
      variables = {"params": params["encoder"], **state["model_state"]}
      if collections:
        features, new_state = encoder_module.apply(
          variables, images, train=True, mutable=collections
        )
      else:
        features, new_state = encoder_module.apply(variables, images, train=True), {}
      logits = head_module.apply({"params": params["head"]}, features)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
      return loss, dict(new_state)

    (loss, model_state), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "model_state": model_state, "opt_state": opt_state}, loss

  return step


def _predict(encoder_module, head_module, params, model_state, batch):
  features = encoder_module.apply(
    {"params": params["encoder"], **model_state}, batch["image"], train=False
  )
  return head_module.apply({"params": params["head"]}, features)

"""What a run builds before its first step: its data (cut to the label budget), its task,
optimizer, sharded initial state, the pure train step jitted over the mesh, and the input that
feeds it."""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax import early_stopping, parallel
from ssl_jax.data.label_budget import apply_label_budget
from ssl_jax.data.pipeline import ShuffledBatches
from ssl_jax.data.records import take_rows
from ssl_jax.data.source import Dataset, unit_float_images
from ssl_jax.data.validation_split import hold_out_validation
from ssl_jax.optim import build_optimizer
from ssl_jax.registry import DATASETS, TASKS, ConfigError
from ssl_jax.state import TrainState
from ssl_jax.tasks.base import Task
from ssl_jax.tasks.continued import continue_from


def init_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(model init key, base key of the train state), both derived from the config seed."""
  init_key, state_key = jax.random.split(jax.random.key(seed))
  return init_key, state_key


def create_state(
  task: Task, tx: optax.GradientTransformation, seed: int, batch: dict[str, jax.Array]
) -> TrainState:
  init_key, state_key = init_keys(seed)
  params, model_state = task.init(init_key, unit_float_images(batch))
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    model_state=model_state,
    opt_state=tx.init(params),
    rng=jax.random.key_data(state_key),
  )


def make_train_step(task: Task, tx: optax.GradientTransformation):
  """The pure update: loss and gradients on the global batch, optimizer, new model state."""

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    rng = state.step_key()
    batch = unit_float_images(batch)  # uint8 sources are copied as bytes, converted here.

    def loss_of(params):
      return task.loss_fn(params, state.model_state, batch, rng, state.step)

    (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # Momentum (EMA) targets follow the updated online weights, projections apply, inside
    # the same jitted step.
    params, model_state = task.after_update(params, model_state, state.step)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
    new_state = state.replace(
      step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state
    )
    return new_state, metrics

  return train_step


def device_batches(
  batches: ShuffledBatches, sharding: jax.sharding.NamedSharding, buffer_size: int = 2
) -> Iterator[tuple[dict[str, jax.Array], dict[str, Any]]]:
  """Yields (global device batch, pipeline state after it), `buffer_size` batches ahead, so the
  next transfer overlaps the current step."""
  queue: collections.deque = collections.deque()
  while True:
    while len(queue) < buffer_size:
      local = next(batches)
      queue.append((parallel.global_batch(local, sharding), batches.get_state()))
    yield queue.popleft()


def build_dataset(config: ml_collections.ConfigDict, workdir: str | None) -> Dataset:
  """`config.data`'s source (with a validation split held out of train if early stopping
  needs one it lacks), cut to `config.label_budget`."""
  options = {k: v for k, v in config.data.items() if k != "name"}
  dataset = DATASETS.build(config.data.name, options, workdir)
  stopping = config.get("early_stopping", early_stopping.defaults())
  if int(stopping.every):
    # A fixed seed: every run seed and label draw is validated on the same examples.
    dataset = hold_out_validation(dataset, float(stopping.validation_fraction), seed=0)
  budget = config.get("label_budget", {})
  return apply_label_budget(
    dataset,
    int(budget.get("per_class", 0)),
    int(budget.get("draw", 0)),
    budget.get("unlabelled", "drop"),
    seed=config.seed,
    indices=tuple(budget.get("indices", ())),
    labels=tuple(budget.get("labels", ())),
  )


def build_task(config: ml_collections.ConfigDict, dataset: Dataset) -> Task:
  return TASKS.build(config.task, config.task_kwargs.to_dict(), config, dataset)


@dataclasses.dataclass
class Run:
  """Everything `setup` builds for a run, before any checkpoint is restored."""

  dataset: Dataset
  task: Task
  schedule: Any
  batches: ShuffledBatches
  example: dict[str, jax.Array]
  state: TrainState
  data_sharding: jax.sharding.NamedSharding
  train_step: Any  # jitted (state, batch) -> (state, metrics), state donated.
  mesh: jax.sharding.Mesh


def setup(config: ml_collections.ConfigDict, workdir: str | None, mesh: jax.sharding.Mesh) -> Run:
  """Builds data, task, optimizer, the sharded initial state and the jitted train step."""
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % mesh.size:
      raise ConfigError(
        f"config.{key}={config[key]} is not divisible by the {mesh.size} devices of the mesh."
      )
  dataset = build_dataset(config, workdir)
  task = build_task(config, dataset)
  tx, schedule = build_optimizer(config.optim, config.total_steps, config.batch_size)
  tx = task.wrap_optimizer(tx)
  batches = ShuffledBatches(dataset.split(dataset.train_split), config.batch_size, seed=config.seed)
  data_sharding = parallel.batch_sharding(mesh)
  example = parallel.global_batch(
    take_rows(
      dataset.split(dataset.train_split), np.arange(config.batch_size // jax.process_count())
    ),
    data_sharding,
  )
  init = functools.partial(create_state, task, tx, config.seed)
  state_sharding = parallel.state_shardings(mesh, jax.eval_shape(init, example))
  state = jax.jit(init, out_shardings=state_sharding)(example)
  params, model_state = task.load_pretrained(state.params, state.model_state)
  if config.get("init_from"):  # continued pretraining (ssl_jax.tasks.continued)
    params, model_state = continue_from(config, dataset, params, model_state)
  state = state.replace(params=params, model_state=model_state)
  train_step = jax.jit(
    make_train_step(task, tx),
    in_shardings=(state_sharding, data_sharding),
    out_shardings=(state_sharding, parallel.replicated(mesh)),
    donate_argnums=0,
  )
  return Run(dataset, task, schedule, batches, example, state, data_sharding, train_step, mesh)

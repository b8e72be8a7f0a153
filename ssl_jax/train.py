"""`train_and_evaluate(config, workdir)`: mesh -> data -> task -> state -> jitted step -> loop
-> evaluation. Read top to bottom; each section does one thing."""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax import data as _data  # noqa: F401  (registers datasets)
from ssl_jax import early_stopping, parallel  # noqa: F401  (registers tasks)
from ssl_jax import evals as _evals  # noqa: F401  (registers evaluators)
from ssl_jax.checkpoint import Checkpointer, saved_steps
from ssl_jax.config_base import EVERY, evaluator_options, resolve_defaults, validate_config
from ssl_jax.data.label_budget import apply_label_budget
from ssl_jax.data.pipeline import ShuffledBatches
from ssl_jax.data.records import take_rows
from ssl_jax.data.source import Dataset, unit_float_images
from ssl_jax.data.validation_split import hold_out_validation
from ssl_jax.errors import CheckpointError, UserError
from ssl_jax.evals.context import EvalContext
from ssl_jax.interrupts import AgreedStop, StopSignals, TrainingInterrupted
from ssl_jax.loop import (
  EarlyStoppingValidation,
  LogMetrics,
  LoopState,
  NonFiniteLossError,  # noqa: F401  (main reports it)
  PeriodicAction,
  PeriodicEvaluation,
  SaveCheckpoint,
  run_loop,
  table_scalars,
)
from ssl_jax.metrics import MetricWriter, drop_records_after, format_results_table, write_json
from ssl_jax.optim import build_optimizer
from ssl_jax.registry import DATASETS, EVALUATORS, TASKS, ConfigError
from ssl_jax.run_config import (
  check_data_facts,
  check_resume,
  dataset_info,
  finished_results,
  read_run_config,
  run_record,
  write_run_config,
)
from ssl_jax.state import TrainState
from ssl_jax.tasks.base import Task
from ssl_jax.workdir import WorkdirLock

# ---------------------------------------------------------------------------------------------
# State and step.
# ---------------------------------------------------------------------------------------------


def _init_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(model init key, base key of the train state), both derived from the config seed."""
  init_key, state_key = jax.random.split(jax.random.key(seed))
  return init_key, state_key


def create_state(
  task: Task, tx: optax.GradientTransformation, seed: int, batch: dict[str, jax.Array]
) -> TrainState:
  init_key, state_key = _init_keys(seed)
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


# ---------------------------------------------------------------------------------------------
# Input.
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------


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
  state = state.replace(params=params, model_state=model_state)
  train_step = jax.jit(
    make_train_step(task, tx),
    in_shardings=(state_sharding, data_sharding),
    out_shardings=(state_sharding, parallel.replicated(mesh)),
    donate_argnums=0,
  )
  return Run(dataset, task, schedule, batches, example, state, data_sharding, train_step)


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, reevaluate: bool = False
) -> dict[str, Any]:
  """Trains `config.task` for `config.total_steps` (resuming from `workdir` if it holds a
  checkpoint), evaluates with `config.evals`, and returns (and writes) the results.

  The workdir is locked for the run; a refused run (bad config, data, changed settings) leaves
  it as it was. A run that already finished is reported, not redone, unless `reevaluate`."""
  resolve_defaults(config)
  validate_config(config)
  with WorkdirLock(workdir) as lock:
    try:
      return _run(config, workdir, lock, reevaluate)
    except (UserError, KeyboardInterrupt):
      lock.discard()  # only a workdir this run created and wrote nothing of value to
      raise


def _run(
  config: ml_collections.ConfigDict, workdir: str, lock: WorkdirLock, reevaluate: bool
) -> dict[str, Any]:
  start_time = time.perf_counter()
  # --- The resume contract, before anything is written ---------------------------------------
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  previous = read_run_config(workdir)
  saved = saved_steps(checkpoint_dir)
  changes = {}
  if previous is not None and saved:
    changes = check_resume(previous, config, TASKS.get(config.task))
    finished = finished_results(workdir, changes, saved[-1])
    if finished is not None and not reevaluate:
      print(
        f"The run in {workdir} finished at step {saved[-1]}; its results are in results.json. "
        "Pass --reevaluate (or change config.evals) to evaluate it again.",
        flush=True,
      )
      if finished.get("evals") and jax.process_index() == 0:
        print(format_results_table(finished["evals"]), flush=True)
      return finished

  # --- Mesh, data, task, fresh state and the compiled step ------------------------------------
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = setup(config, workdir, mesh)
    info = dataset_info(run.dataset)
    if previous is not None and saved:
      check_data_facts(previous, info)

    # --- Resume from the newest intact checkpoint, if any -------------------------------------
    record = run_record(config)
    checkpointer = Checkpointer(checkpoint_dir, config.keep_checkpoints, run_record=record)
    stopper = early_stopping.from_config(config.early_stopping)
    state, latest = run.state, None
    restored = checkpointer.restore_latest(state)
    step = restored[0] if restored is not None else 0
    write_run_config(workdir, config, info, previous if saved else None, changes, step)
    lock.keep()
    if restored is not None:
      latest, state, data_state = restored
      tracked = data_state.pop(early_stopping.CHECKPOINT_KEY, None)
      if stopper is not None and tracked is not None:
        stopper.load_state_dict(tracked)
      run.batches.set_state(data_state)
      print(f"Resumed from the checkpoint of step {latest} in {workdir}.", flush=True)
    if jax.process_index() == 0:
      # Steps logged after the checkpoint resumed from (or by an attempt that saved none) are
      # trained again; their old records would repeat.
      drop_records_after(os.path.join(workdir, "metrics.jsonl"), latest or 0)
    step = int(jax.device_get(state.step))
    init_key = _init_keys(config.seed)[0]
    initial_variables = functools.cache(
      lambda: jax.jit(functools.partial(run.task.init, init_key))(run.example)
    )

    def eval_context(state: TrainState) -> EvalContext:
      return EvalContext(
        task=run.task,
        variables=(state.params, state.model_state),
        initial_variables=initial_variables,
        dataset=run.dataset,
        mesh=mesh,
        batch_size=config.eval_batch_size,
        seed=config.seed,
        name=config.task,
        shared=shared,
      )

    shared: dict = {}  # baseline features and compiled functions, for every evaluation

    def evaluate(name: str, state: TrainState) -> dict[str, dict[str, Any]]:
      options = evaluator_options(config.evals[name])
      return EVALUATORS.get(name)(eval_context(state), **options)

    # --- Loop: periodic actions after each step --------------------------------------------------
    writer = MetricWriter(workdir, config.total_steps) if jax.process_index() == 0 else None
    actions: list[PeriodicAction] = [
      LogMetrics(config.log_every, writer, run.schedule, config.batch_size, step)
    ]
    for name, options in config.evals.items():
      if int(options.get(EVERY, 0)):
        actions.append(
          PeriodicEvaluation(options[EVERY], name, functools.partial(evaluate, name), writer)
        )
    if stopper is not None:
      # Two kept: a damaged best falls back to the previous best.
      best = Checkpointer(os.path.join(workdir, "best_checkpoint"), 2, run_record=record)
      validation = early_stopping.make_validation(config.early_stopping, eval_context)
      actions.append(
        EarlyStoppingValidation(config.early_stopping.every, stopper, validation, best, writer)
      )
    actions.append(SaveCheckpoint(config.checkpoint_every, checkpointer, list(actions)))
    loop = LoopState(step, config.total_steps, state, last_saved=latest)
    loop.stop_requested = stopper is not None and stopper.stopped
    try:
      with StopSignals() as signals:
        batches = device_batches(run.batches, run.data_sharding)
        stop = AgreedStop(signals)
        run_loop(loop, run.train_step, batches, actions, lambda: stop(loop.step))
        if stop.signum:
          checkpointer.wait()
          raise TrainingInterrupted(loop.step, workdir, stop.signum)
    except BaseException:
      if writer is not None:
        writer.close()
      raise
    finally:
      checkpointer.close()
    state, step = loop.state, loop.step
    train_seconds = time.perf_counter() - start_time

    # --- The best validated state, when early stopping kept one ---------------------------------
    if stopper is not None:
      state = best_validated_state(best, stopper, state, step)

    # --- What the run ships beyond its pretraining (fine-tunes: the trained weights) ----------
    exported = run.task.export(state.params, os.path.join(workdir, "task_weights"))

    # --- Evaluation ------------------------------------------------------------------------------
    evals = {name: evaluate(name, state) for name in config.evals}
    if writer is not None:
      # The curve of a periodic evaluator ends with its final value.
      periodic = [n for n, o in config.evals.items() if int(o.get(EVERY, 0))]
      scalars = {k: v for n in periodic for k, v in table_scalars(n, evals[n]).items()}
      if scalars:
        writer.write(step, scalars)
      writer.close()

  results = {
    "step": step,
    "evals": evals,
    "train_seconds": round(train_seconds, 1),
    "total_seconds": round(time.perf_counter() - start_time, 1),
  }
  if stopper is not None:
    results["early_stopping"] = stopper.summary(step)
  if exported is not None:
    results["task_weights"] = exported
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, "results.json"), results)
    if evals:
      print(format_results_table(evals), flush=True)
  return results


def best_validated_state(
  best: Checkpointer, stopper: early_stopping.EarlyStopping, state: TrainState, step: int
) -> TrainState:
  """The state early stopping kept (the newest intact best checkpoint), else `state`."""
  try:
    best.wait()
    restored = best.restore_latest(state)
  except CheckpointError as error:
    print(f"Warning: {error} Evaluating the final state of step {step} instead.", flush=True)
    restored = None
  finally:
    best.close()
  if restored is None or restored[0] == step:
    return state
  print(
    f"Evaluating the best validated state, step {restored[0]} "
    f"({stopper.metric} {stopper.best_value:.4f}).",
    flush=True,
  )
  return restored[1]

"""`train_and_evaluate(config, workdir)`: mesh -> data -> task -> state -> jitted step -> loop
-> evaluation. Read top to bottom; each section does one thing."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from ssl_jax import data as _data  # noqa: F401  (registers datasets)
from ssl_jax import early_stopping, parallel
from ssl_jax import evals as _evals  # noqa: F401  (registers evaluators)
from ssl_jax import tasks as _tasks  # noqa: F401  (registers tasks)
from ssl_jax.config_base import (
  EVERY,
  evaluator_options,
  resolve_defaults,
  validate_config,
  with_new_defaults,
)
from ssl_jax.errors import CheckpointError, UserError
from ssl_jax.evals.context import EvalContext
from ssl_jax.interrupts import AgreedStop, StopSignals, TrainingInterrupted
from ssl_jax.loop import (
  EarlyStoppingValidation,
  LogMetrics,
  LoopState,
  PeriodicAction,
  PeriodicEvaluation,
  SaveCheckpoint,
  run_loop,
  table_scalars,
)
from ssl_jax.metrics import MetricWriter, drop_records_after, format_results_table, write_json
from ssl_jax.registry import EVALUATORS, TASKS
from ssl_jax.run_setup import (  # noqa: F401  (build_dataset, build_task: the trainer's parts)
  Run,
  build_dataset,
  build_task,
  device_batches,
  init_keys,
  setup,
)
from ssl_jax.runs.checkpoints import Checkpointer, saved_steps
from ssl_jax.runs.lock import WorkdirLock
from ssl_jax.runs.record import (
  RunRecord,
  check_data_facts,
  check_resume,
  dataset_info,
  finished_results,
  read_run_config,
  write_run_config,
)
from ssl_jax.state import TrainState

CHECKPOINTS = "checkpoints"
BEST_CHECKPOINT = "best_checkpoint"

# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------


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
  """Resume or report, build, loop, finish: each phase one function below."""
  start_time = time.perf_counter()
  resume = check_workdir(config, workdir)
  if resume.finished is not None and not reevaluate:
    return report_finished(workdir, resume)
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = setup(config, workdir, mesh)
    session = start_session(config, workdir, lock, run, resume)
    writer = MetricWriter(workdir, config.total_steps) if jax.process_index() == 0 else None
    actions, best = periodic_actions(config, workdir, run, session, writer)
    loop = train_steps(config, workdir, run, session, actions, writer)
    train_seconds = time.perf_counter() - start_time
    results = finish(config, workdir, run, session, loop, best, writer)
  results["train_seconds"] = round(train_seconds, 1)
  results["total_seconds"] = round(time.perf_counter() - start_time, 1)
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, "results.json"), results)
    if results["evals"]:
      print(format_results_table(results["evals"]), flush=True)
  return results


@dataclasses.dataclass
class Resume:
  """What the workdir holds before anything is written: its config.json, its saved steps, the
  allowed changes to the config, and the results of a run that finished (None: work to do)."""

  previous: dict[str, Any] | None
  saved: list[int]
  changes: dict[str, tuple[Any, Any]]
  finished: dict[str, Any] | None

  @property
  def resuming(self) -> bool:
    return self.previous is not None and bool(self.saved)


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> Resume:
  """The resume contract, before anything is written: a ResumeError for a run-defining change."""
  previous = read_run_config(workdir)
  saved = saved_steps(os.path.join(workdir, CHECKPOINTS))
  if previous is None or not saved:
    return Resume(previous, saved, {}, None)
  changes = check_resume(previous, config, TASKS.get(config.task), with_new_defaults)
  return Resume(previous, saved, changes, finished_results(workdir, changes, saved[-1]))


def report_finished(workdir: str, resume: Resume) -> dict[str, Any]:
  """A finished run, re-run unchanged: its results, not a second training."""
  print(
    f"The run in {workdir} finished at step {resume.saved[-1]}; its results are in results.json. "
    "Pass --reevaluate (or change config.evals) to evaluate it again.",
    flush=True,
  )
  if resume.finished.get("evals") and jax.process_index() == 0:
    print(format_results_table(resume.finished["evals"]), flush=True)
  return resume.finished


@dataclasses.dataclass
class Session:
  """A run's state once its workdir is claimed: where it starts, what keeps its checkpoints,
  early stopping (if on) and how to build an evaluation context for a state."""

  state: TrainState
  latest: int | None  # the checkpoint step resumed from
  checkpointer: Checkpointer
  record: RunRecord
  stopper: early_stopping.EarlyStopping | None
  eval_context: Callable[[TrainState], EvalContext]


def start_session(
  config: ml_collections.ConfigDict, workdir: str, lock: WorkdirLock, run: Run, resume: Resume
) -> Session:
  """Checks the data against the checkpoints', restores the newest intact checkpoint (with the
  pipeline's position and early stopping's record), writes config.json and keeps the workdir."""
  info = dataset_info(run.dataset)
  if resume.resuming:
    check_data_facts(resume.previous, info)
  record = RunRecord.of(config, with_new_defaults)
  checkpointer = Checkpointer(
    os.path.join(workdir, CHECKPOINTS), config.keep_checkpoints, run_record=record
  )
  stopper = early_stopping.from_config(config.early_stopping)
  state, latest = run.state, None
  restored = checkpointer.restore_latest(state)
  step = restored[0] if restored is not None else 0
  write_run_config(
    workdir, config, info, resume.previous if resume.saved else None, resume.changes, step
  )
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
  return Session(state, latest, checkpointer, record, stopper, context_builder(config, run))


def context_builder(config: ml_collections.ConfigDict, run: Run) -> Callable:
  """state -> EvalContext; every context shares one cache of baseline features and compiled
  functions, and the initial variables are computed once, when first asked for."""
  init_key = init_keys(config.seed)[0]
  initial_variables = functools.cache(
    lambda: jax.jit(functools.partial(run.task.init, init_key))(run.example)
  )
  shared: dict = {}

  def eval_context(state: TrainState) -> EvalContext:
    return EvalContext(
      task=run.task,
      variables=(state.params, state.model_state),
      initial_variables=initial_variables,
      dataset=run.dataset,
      mesh=run.mesh,
      batch_size=config.eval_batch_size,
      seed=config.seed,
      name=config.task,
      shared=shared,
    )

  return eval_context


def evaluate(
  config: ml_collections.ConfigDict, session: Session, name: str, state: TrainState
) -> dict[str, dict[str, Any]]:
  """Evaluator `name` of config.evals on `state`."""
  options = evaluator_options(config.evals[name])
  return EVALUATORS.get(name)(session.eval_context(state), **options)


def periodic_actions(
  config: ml_collections.ConfigDict,
  workdir: str,
  run: Run,
  session: Session,
  writer: MetricWriter | None,
) -> tuple[list[PeriodicAction], Checkpointer | None]:
  """Logging, the periodic evaluators, early-stopping validation (with its best-state
  checkpointer, returned) and checkpointing, which saves the others' state last."""
  step = int(jax.device_get(session.state.step))
  actions: list[PeriodicAction] = [
    LogMetrics(config.log_every, writer, run.schedule, config.batch_size, step)
  ]
  for name, options in config.evals.items():
    if int(options.get(EVERY, 0)):
      evaluator = functools.partial(evaluate, config, session, name)
      actions.append(PeriodicEvaluation(options[EVERY], name, evaluator, writer))
  best = None
  if session.stopper is not None:
    # Two kept: a damaged best falls back to the previous best.
    best = Checkpointer(os.path.join(workdir, BEST_CHECKPOINT), 2, run_record=session.record)
    validation = early_stopping.make_validation(config.early_stopping, session.eval_context)
    every = config.early_stopping.every
    actions.append(EarlyStoppingValidation(every, session.stopper, validation, best, writer))
  actions.append(SaveCheckpoint(config.checkpoint_every, session.checkpointer, list(actions)))
  return actions, best


def train_steps(
  config: ml_collections.ConfigDict,
  workdir: str,
  run: Run,
  session: Session,
  actions: list[PeriodicAction],
  writer: MetricWriter | None,
) -> LoopState:
  """Steps to config.total_steps (or an early stop), the periodic actions after each; a stop
  signal saves a checkpoint and ends with TrainingInterrupted."""
  step = int(jax.device_get(session.state.step))
  loop = LoopState(step, config.total_steps, session.state, last_saved=session.latest)
  loop.stop_requested = session.stopper is not None and session.stopper.stopped
  try:
    with StopSignals() as signals:
      batches = device_batches(run.batches, run.data_sharding)
      stop = AgreedStop(signals)
      run_loop(loop, run.train_step, batches, actions, lambda: stop(loop.step))
      if stop.signum:
        session.checkpointer.wait()
        raise TrainingInterrupted(loop.step, workdir, stop.signum)
  except BaseException:
    if writer is not None:
      writer.close()
    raise
  finally:
    session.checkpointer.close()
  return loop


def finish(
  config: ml_collections.ConfigDict,
  workdir: str,
  run: Run,
  session: Session,
  loop: LoopState,
  best: Checkpointer | None,
  writer: MetricWriter | None,
) -> dict[str, Any]:
  """The state to evaluate (early stopping's best, else the last), what the task exports
  (a fine-tune's trained weights), the final evaluation and results.json."""
  state, step = loop.state, loop.step
  if best is not None:
    state = best_validated_state(best, session.stopper, state, step)
  exported = run.task.export(state.params, os.path.join(workdir, "task_weights"))
  evals = {name: evaluate(config, session, name, state) for name in config.evals}
  if writer is not None:
    # The curve of a periodic evaluator ends with its final value.
    periodic = [n for n, o in config.evals.items() if int(o.get(EVERY, 0))]
    scalars = {k: v for n in periodic for k, v in table_scalars(n, evals[n]).items()}
    if scalars:
      writer.write(step, scalars)
    writer.close()
  results: dict[str, Any] = {"step": step, "evals": evals}
  if session.stopper is not None:
    results["early_stopping"] = session.stopper.summary(step)
  if exported is not None:
    results["task_weights"] = exported
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

"""The train loop and its periodic actions.

The loop only steps: after each step it asks every action whether it is due and runs it.
Logging, evaluators with `config.evals.<name>.every = N`, early-stopping validation and
checkpointing are actions, each with its own interval (0 = only at the end of the run); a new
periodic feature is a new action, not an edit of the loop.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from ssl_jax import early_stopping
from ssl_jax.errors import NonFiniteLossError
from ssl_jax.metrics import MetricWriter, Throughput
from ssl_jax.runs.checkpoints import Checkpointer
from ssl_jax.state import TrainState

Metrics = dict[str, jax.Array]

# The loop dispatches a step before the previous ones finish, so the host prepares the next
# batch while the device works; a few steps ahead keep the device busy. Without a bound, more
# than 32 multi-device steps in flight deadlock XLA:CPU (jax 0.10): each device admits 32
# unfinished programs, a pool thread launches each device's part of a step, and a later step's
# parts can take a device's last slots (waiting for inputs the earlier step has not made) while
# the earlier step's part on that device waits for a slot, with its peers stuck in its
# all-reduce. Waiting for the step `MAX_STEPS_IN_FLIGHT` back (no transfer) rules that out.
MAX_STEPS_IN_FLIGHT = 4


@dataclasses.dataclass
class LoopState:
  """What the actions see and change: the step just taken, the state after it, the input
  pipeline's position, device metrics not yet read, and whether the run should stop."""

  step: int
  total_steps: int
  state: TrainState
  data_state: dict[str, Any] = dataclasses.field(default_factory=dict)
  pending: list[tuple[int, Metrics]] = dataclasses.field(default_factory=list)
  last_saved: int | None = None
  stop_requested: bool = False

  @property
  def final(self) -> bool:
    return self.step == self.total_steps


class PeriodicAction(abc.ABC):
  """Runs every `every` steps and after the last step (`every` 0: only after the last)."""

  def __init__(self, every: int):
    self.every = int(every)

  def due(self, loop: LoopState) -> bool:
    return loop.final or (self.every > 0 and loop.step % self.every == 0)

  @abc.abstractmethod
  def run(self, loop: LoopState) -> None:
    """Does the action after step `loop.step` (it may set `loop.stop_requested`)."""

  def checkpoint_state(self) -> dict[str, Any]:
    """JSON-able state saved with every checkpoint (e.g. early stopping's curve)."""
    return {}


def run_loop(
  loop: LoopState,
  train_step: Callable[[TrainState, Any], tuple[TrainState, Metrics]],
  batches: Iterator[tuple[Any, dict[str, Any]]],
  actions: list[PeriodicAction],
  interrupted: Callable[[], bool],
) -> LoopState:
  """Steps until `total_steps` or an action (or `interrupted()`) asks to stop; at most
  `MAX_STEPS_IN_FLIGHT` dispatched steps are unfinished at any time."""
  in_flight: collections.deque = collections.deque()
  while loop.step < loop.total_steps and not loop.stop_requested:
    batch, loop.data_state = next(batches)
    if len(in_flight) == MAX_STEPS_IN_FLIGHT:
      jax.block_until_ready(in_flight.popleft())
    loop.state, metrics = train_step(loop.state, batch)
    in_flight.append(metrics["loss"])
    loop.step += 1
    loop.pending.append((loop.step, metrics))
    loop.stop_requested = loop.stop_requested or interrupted()
    for action in actions:
      if action.due(loop):
        action.run(loop)
  return loop


def check_finite(loop: LoopState) -> None:
  """Raises NonFiniteLossError naming the first step whose loss is NaN or Inf (a host sync)."""
  if not loop.pending:
    return
  losses = jax.device_get([metrics["loss"] for _, metrics in loop.pending])
  for (step, _), loss in zip(loop.pending, losses):
    if not np.isfinite(loss):
      where = (
        f"the last good checkpoint is step {loop.last_saved}"
        if loop.last_saved is not None
        else "no checkpoint was saved before it"
      )
      raise NonFiniteLossError(
        f"The loss became {float(loss)} at step {step}; stopped without saving that state "
        f"({where}). Lower the learning rate, enable config.optim.clip_norm, or check the "
        "input data."
      )


class LogMetrics(PeriodicAction):
  """Reads the metrics of the steps since the last log (the only host sync of the loop),
  checks them, and writes their means with the learning rate and throughput."""

  def __init__(self, every: int, writer: MetricWriter | None, schedule, batch_size: int, step: int):
    super().__init__(every)
    self.writer, self.schedule, self.batch_size = writer, schedule, batch_size
    self.throughput = Throughput(step)

  def run(self, loop):
    check_finite(loop)
    values = jax.device_get([metrics for _, metrics in loop.pending])
    loop.pending = []
    means = {key: float(np.mean([v[key] for v in values])) for key in values[0]}
    steps_per_second, examples_per_second = self.throughput.update(loop.step, self.batch_size)
    scalars = {
      **means,
      "learning_rate": float(self.schedule(loop.step - 1)),
      "steps_per_second": steps_per_second,
      "examples_per_second": examples_per_second,
    }
    if self.writer is not None:
      self.writer.write(loop.step, scalars)
      self.writer.progress(loop.step, scalars, steps_per_second)


def table_scalars(name: str, table: dict[str, dict[str, Any]]) -> dict[str, float]:
  """An evaluator's table as scalars "<evaluator>/<row>/<column>" (a mean ± std cell gives
  its mean); text cells (samples) are left out."""
  scalars = {}
  for row, columns in table.items():
    for column, value in columns.items():
      if isinstance(value, dict) and "mean" in value:
        value = value["mean"]
      if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        scalars[f"{name}/{row}/{column}"] = float(value)
  return scalars


class PeriodicEvaluation(PeriodicAction):
  """One evaluator every `every` steps on the current state, its scalars in metrics.jsonl and
  TensorBoard. Not run after the last step: the final evaluation covers it."""

  def __init__(
    self,
    every: int,
    name: str,
    evaluate: Callable[[TrainState], dict[str, dict[str, Any]]],
    writer: MetricWriter | None,
  ):
    super().__init__(every)
    self.name, self.evaluate, self.writer = name, evaluate, writer

  def due(self, loop):
    return self.every > 0 and loop.step % self.every == 0 and not loop.final

  def run(self, loop):
    scalars = table_scalars(self.name, self.evaluate(loop.state))
    if self.writer is not None:
      self.writer.write(loop.step, scalars)
    shown = ", ".join(f"{key} {value:.4f}" for key, value in scalars.items())
    print(f"step {loop.step} | {shown}", flush=True)


class EarlyStoppingValidation(PeriodicAction):
  """Validates every `every` steps, keeps the best state as its own checkpoint, and asks the
  loop to stop after `patience` validations without improvement."""

  def __init__(
    self,
    every: int,
    stopper: early_stopping.EarlyStopping,
    validation: Callable[[TrainState], float],
    best: Checkpointer,
    writer: MetricWriter | None,
  ):
    super().__init__(every)
    self.stopper, self.validation, self.best, self.writer = stopper, validation, best, writer

  def run(self, loop):
    stopper = self.stopper
    value = self.validation(loop.state)
    if self.writer is not None:
      self.writer.write(loop.step, {f"early_stopping/{stopper.metric}": value})
    # After a resume the best of a validated step may already be on disk (saved before the
    # interruption, after the last regular checkpoint); the resumed state there is identical.
    if stopper.update(loop.step, value) and loop.step not in self.best.all_steps():
      self.best.save(loop.step, loop.state, loop.data_state)
    if stopper.stopped:
      loop.stop_requested = True
      print(
        f"Early stopping at step {loop.step}: {stopper.metric} has not improved on "
        f"{stopper.best_value:.4f} (step {stopper.best_step}) for {stopper.patience} "
        "validations.",
        flush=True,
      )

  def checkpoint_state(self):
    return {early_stopping.CHECKPOINT_KEY: self.stopper.state_dict()}


class SaveCheckpoint(PeriodicAction):
  """Saves the state and the pipeline position (with the other actions' checkpoint state)
  every `every` steps, after the last step, and whenever the run is about to stop; a state
  with a non-finite loss is never saved."""

  def __init__(self, every: int, checkpointer: Checkpointer, actions: list[PeriodicAction]):
    super().__init__(every)
    self.checkpointer, self.actions = checkpointer, actions

  def due(self, loop):
    return super().due(loop) or loop.stop_requested

  def run(self, loop):
    check_finite(loop)
    extra = {}
    for action in self.actions:
      extra.update(action.checkpoint_state())
    self.checkpointer.save(loop.step, loop.state, {**loop.data_state, **extra})
    loop.last_saved = loop.step

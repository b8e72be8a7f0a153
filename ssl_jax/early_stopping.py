"""Early stopping on a validation metric, keeping the best state on disk.

  config.early_stopping = {"every": 50, "patience": 4, "metric": "validation acc", ...}

Every `every` steps (and at the last step) the trainer runs `evaluator` (default
"classification" on the validation split) on the current state and reads `metric` from the
trained model's row. An improvement saves the state as <workdir>/best_checkpoint (Orbax,
atomic, one kept); after `patience` validations without one the run stops (patience 0: run
every step, still return the best). The final evaluation uses the best state, and
results.json reports the best step and the whole validation curve.

The tracker rides in every regular checkpoint, so a resumed run continues the same curve, and
a run that already stopped early stays stopped. Datasets without a validation split get one
held out of train (`validation_fraction`, see data/validation_split.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections

from ssl_jax.registry import EVALUATORS, ConfigError

MODES = ("max", "min")
# Key of the tracker inside a checkpoint's JSON data item (beside the input pipeline's state).
CHECKPOINT_KEY = "early_stopping"


def defaults() -> ml_collections.ConfigDict:
  """config.early_stopping's keys; every=0 disables it."""
  return ml_collections.ConfigDict(
    dict(
      every=0,  # validate every this many steps (and at the last); 0 = off
      patience=0,  # stop after this many validations without improvement; 0 = never
      evaluator="classification",
      options=ml_collections.ConfigDict({"splits": ("validation",)}),  # the evaluator's options
      metric="validation acc",  # read from the trained model's row of the evaluator's result
      mode="max",  # max | min
      min_delta=0.0,  # an improvement must beat the best by more than this
      validation_fraction=0.1,  # held out of train when the dataset has no validation split
    )
  )


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for a bad config.early_stopping (run before any work)."""
  if int(section.every) < 0 or int(section.patience) < 0:
    raise ConfigError(
      f"config.early_stopping.every and .patience must be >= 0; got every="
      f"{section.every}, patience={section.patience}."
    )
  if section.mode not in MODES:
    raise ConfigError(f"Unknown config.early_stopping.mode {section.mode!r}; valid: {list(MODES)}.")
  if section.every:
    EVALUATORS.validate(
      section.evaluator, section.options, num_positional=1, where="config.early_stopping.options"
    )


@dataclasses.dataclass
class EarlyStopping:
  """The validation curve so far and whether to stop."""

  metric: str
  mode: str = "max"
  patience: int = 0
  min_delta: float = 0.0
  best_step: int | None = None
  best_value: float | None = None
  since_best: int = 0
  history: list[tuple[int, float]] = dataclasses.field(default_factory=list)

  def update(self, step: int, value: float) -> bool:
    """Records a validation; True when it is the best so far (the state should be kept)."""
    self.history.append((step, float(value)))
    sign = 1.0 if self.mode == "max" else -1.0
    if self.best_value is None or sign * (value - self.best_value) > self.min_delta:
      self.best_step, self.best_value, self.since_best = step, float(value), 0
      return True
    self.since_best += 1
    return False

  @property
  def stopped(self) -> bool:
    return self.patience > 0 and self.since_best >= self.patience

  def state_dict(self) -> dict[str, Any]:
    return {
      "best_step": self.best_step,
      "best_value": self.best_value,
      "since_best": self.since_best,
      "history": [list(h) for h in self.history],
    }

  def load_state_dict(self, state: dict[str, Any]) -> None:
    self.best_step, self.best_value = state["best_step"], state["best_value"]
    self.since_best = int(state["since_best"])
    self.history = [(int(step), float(value)) for step, value in state["history"]]

  def summary(self, final_step: int) -> dict[str, Any]:
    return {
      "metric": self.metric,
      "best_step": self.best_step,
      "best_value": self.best_value,
      "stopped_early": self.stopped,
      "last_step": final_step,
      "history": [list(h) for h in self.history],
    }


def from_config(section: ml_collections.ConfigDict) -> EarlyStopping | None:
  if not int(section.every):
    return None
  return EarlyStopping(
    section.metric, section.mode, int(section.patience), float(section.min_delta)
  )


def metric_of(results: dict[str, dict[str, float]], row: str, metric: str) -> float:
  """`metric` from the `row` of an evaluator's {row: {metric: value}} (its first row if
  `row` is absent), or a ConfigError naming the metrics there are."""
  values = results.get(row) or next(iter(results.values()))
  if metric not in values:
    raise ConfigError(
      f"config.early_stopping.metric={metric!r} is not in the evaluator's "
      f"results; it reports {sorted(values)}."
    )
  return float(values[metric])


def make_validation(
  section: ml_collections.ConfigDict, context: Callable[[Any], Any]
) -> Callable[[Any], float]:
  """state -> the validation metric, running the evaluator on `context(state)` (an
  EvalContext of that state)."""
  evaluator = EVALUATORS.get(section.evaluator)
  options = section.options.to_dict()

  def validation(state) -> float:
    ctx = context(state)
    return metric_of(evaluator(ctx, **options), ctx.name, section.metric)

  return validation

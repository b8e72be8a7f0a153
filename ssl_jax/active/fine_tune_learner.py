"""The `fine_tune` learner: each round is one run of the trainer (`train.train_and_evaluate`)
with a fine-tuning config (linear probe, full fine-tune or any PEFT method: the config's
`task_kwargs.method` and `peft` block), its train split cut to the round's labels by
`config.label_budget.indices` / `.labels`, in `<round directory>/run`; `overrides` changes the
config's options, nested as the config is ({"total_steps": 100, "task_kwargs": {"method":
"peft"}}): the same checkpoints,
resume and evaluators as every other run, so an interrupted round resumes inside its run.

After training, the next query reads the fine-tuned network's class probabilities on the
pool and its encoder's features (`represent`). It provides no Monte-Carlo dropout samples (the
image encoders have no dropout, and sampling a whole network per mask is what `linear_head`
avoids): the loop refuses BALD-family strategies with this learner before any work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from ssl_jax import train
from ssl_jax.active.learners import LEARNERS, Fitted, Learner, PoolData, RoundInputs
from ssl_jax.capabilities import Classifier, Represents
from ssl_jax.config_base import resolve_defaults, validate_config
from ssl_jax.config_file import load_config_file
from ssl_jax.errors import ConfigError
from ssl_jax.evals.context import TRAINED, standalone_context
from ssl_jax.registry import TASKS
from ssl_jax.runs.finished import load_finished_run


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: dict[str, Any], source: str, where: str = ""
) -> None:
  """Sets nested `overrides` ({"total_steps": 50, "task_kwargs": {"method": "linear"}}) in
  `config`; a key the config does not have is a ConfigError naming it."""
  for key, value in overrides.items():
    if key not in config:
      raise ConfigError(
        f"config.active.learner_kwargs.overrides.{where}{key}: {source} has no such option; "
        f"valid: {sorted(config.keys())}."
      )
    if isinstance(value, Mapping) and isinstance(config[key], ml_collections.ConfigDict):
      apply_overrides(config[key], value, source, f"{where}{key}.")
    else:
      config[key] = value


def round_base_config(
  config: Any, config_file: str = "configs/classify_digits.py", overrides: Any = None
) -> ml_collections.ConfigDict:
  """The fine-tuning config of every round (before the round's labels) on the active-learning
  config's pretraining run and data, validated as the trainer validates it."""
  base = load_config_file(
    config_file, "config.active.learner_kwargs.config_file", "configs/classify_digits.py"
  )
  if isinstance(overrides, ml_collections.ConfigDict):
    overrides = overrides.to_dict()
  apply_overrides(base, dict(overrides or {}), config_file)
  base.task_kwargs.init_from = config.init_from
  base.data = ml_collections.ConfigDict(config.data.to_dict())
  base.evals = ml_collections.ConfigDict({"classification": {"splits": ["test"]}})
  base.checkpoint_every = base.total_steps or 1
  base.keep_checkpoints = 1
  resolve_defaults(base)
  task_class = TASKS.get(base.task)
  if not issubclass(task_class, Classifier) or not issubclass(task_class, Represents):
    raise ConfigError(
      f"config.active.learner_kwargs.config_file={config_file!r} trains {base.task!r}, not a "
      "classifier with features; give a fine-tuning config."
    )
  validate_config(base)
  return base


@LEARNERS.register("fine_tune")
class FineTune(Learner):
  """A fine-tuning run of the trainer per round (see the module docstring)."""

  provides = ("features", "probs")
  warm_start = False

  def __init__(
    self,
    data: PoolData,
    config: Any,
    config_file: str = "configs/classify_digits.py",
    overrides: dict[str, Any] | None = None,
  ):
    super().__init__(data, config)
    self.base = round_base_config(config, config_file, overrides)

  @classmethod
  def check(cls, options: dict[str, Any], config: Any) -> None:
    """The fine-tuning config, its overrides and the trainer's checks of it, before any work."""
    round_base_config(config, **options)

  def round_config(self, inputs: RoundInputs) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(self.base.to_dict())
    config.label_budget.indices = [int(i) for i in inputs.labelled]
    config.label_budget.labels = [int(y) for y in inputs.labels]
    config.seed = inputs.seed
    return config

  def fit(self, inputs: RoundInputs, warm_start: bool) -> Fitted:
    del warm_start  # the loop only passes True to learners that declare it
    workdir = os.path.join(inputs.directory, "run")
    config = self.round_config(inputs)
    if not os.path.isfile(os.path.join(workdir, "results.json")):
      train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "results.json")) as f:
      evals = json.load(f)["evals"]["classification"]
    accuracy = float(evals[config.task]["test acc"])
    run = load_finished_run(
      workdir, self.data.dataset, requires=(Classifier, Represents), what="the round's run"
    )
    task, variables = run.task, (run.variables["params"], run.variables["model_state"])
    ctx = standalone_context(
      task, variables, self.data.dataset, config.eval_batch_size, config.seed
    )
    probs = ctx.apply(
      ctx.jit(lambda p, s, b: jax.nn.softmax(task.logits(p, s, b, None, train=False), -1)),
      variables,
      dict(self.data.dataset.split("train")),
    )
    features = ctx.features(TRAINED, "train")
    return Fitted(accuracy, dict(features=features, probs=np.asarray(probs, np.float32)))

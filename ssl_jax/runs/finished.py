"""The one reader of a finished run: its config rebuilt from `config.json`, its task rebuilt by
name, and the variables and step of its newest intact checkpoint. A fine-tune's pretraining
run, a classifier reward's classifier, an active-learning round's fine-tune and an embedding
map's run are all read here. Nothing here knows task names; the task registry is filled by
whoever imports the tasks. This package imports neither the config schema nor the data
package: the caller passes a dataset (`like`) whose class and facts stand in for the run's."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
import numpy as np

from ssl_jax.capabilities import Capability, EncoderView, describe_missing
from ssl_jax.errors import ConfigError, MissingInputError
from ssl_jax.registry import TASKS
from ssl_jax.runs.checkpoints import Checkpointer, saved_steps
from ssl_jax.runs.model_dir import is_model_directory
from ssl_jax.runs.model_source import (
  check_directory,
  directory_model_options,
  directory_run_parts,
)
from ssl_jax.runs.record import CONFIG_FILE, HISTORY, TRAIN_FIELDS, read_run_config


@dataclasses.dataclass
class FinishedRun:
  """config: the run's config.json; task: its task rebuilt (with the declared capabilities);
  variables: {"params", "model_state"} of its newest intact checkpoint (numpy); step: that
  checkpoint's step; checkpoint: its directory; rows: one (zero) training row of the run's
  data's shapes."""

  config: ml_collections.ConfigDict
  task: Any
  variables: dict[str, Any]
  step: int
  checkpoint: str
  rows: dict[str, np.ndarray]

  def example(self) -> dict[str, np.ndarray]:
    """A batch the task's `init` accepts (its parameters' shapes)."""
    return dict(self.rows)

  def encoder_variables(self) -> dict[str, Any]:
    return self.task.encoder_variables(self.variables["params"], self.variables["model_state"])

  def split_encoder(self) -> tuple[dict[str, Any], tuple[Any, Any]]:
    return self.task.split_encoder(self.variables["params"], self.variables["model_state"])


def read_config(workdir: str, what: str = "init_from") -> ml_collections.ConfigDict:
  """The config.json of a finished run's workdir; `what` (the option that named it) and a
  clear error when there is none."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise MissingInputError(
      f"{what}={workdir!r}: {path} does not exist. Point {what} at the workdir of a finished run."
    )
  recorded = read_run_config(workdir)
  recorded.pop(HISTORY, None)
  # dataset_info may hold special-token names with dots (T5's "<extra_id_0..99>").
  return ml_collections.ConfigDict(recorded, allow_dotted_keys=True)


def check_source(
  workdir: str, requires: tuple[type[Capability], ...] = (EncoderView,), what: str = "init_from"
) -> ml_collections.ConfigDict:
  """Checks, before any work, that `workdir` holds a run (or is a model directory, see
  `ssl_jax.runs.model_source`) whose task has the capabilities `requires`; returns its config."""
  if is_model_directory(workdir):
    return check_directory(workdir, requires, what)
  config = read_config(workdir, what)
  task_class = TASKS.get(config.task)
  missing = [c for c in requires if not issubclass(task_class, c)]
  if missing:
    raise ConfigError(describe_missing(f"{what}={workdir!r}", config.task, missing))
  return config


def source_model_options(path: str, what: str = "init_from") -> tuple[str, dict[str, Any]]:
  """(config.model, config.model_kwargs) of the model a finished run or model directory
  trained: what a run continuing from it builds."""
  if is_model_directory(path):
    return directory_model_options(path)
  config = read_config(path, what)
  return config.model, config.model_kwargs.to_dict()


def shape_only_dataset(config: ml_collections.ConfigDict, like: Any) -> Any:
  """A one-row training split with the pretraining rows' shapes and the pretraining data's
  facts (its dataset_info: vocabulary size with any T5 sentinels, special ids), over those of
  `like` (the fine-tune's data, which shares the tokenizer and has its per-piece tables): what
  the task's constructor reads to size its model."""
  recorded = config.get("dataset_info", ml_collections.ConfigDict()).to_dict()
  fields = recorded.pop(TRAIN_FIELDS, None)
  info = {**like.info, **recorded}
  rows = {}
  if fields:
    for key, (shape, dtype) in fields.items():
      rows[key] = np.zeros((1, *shape), dtype)
  else:  # a run written before the shapes were recorded: the fine-tune's rows
    train = like.split(like.train_split)
    rows = {key: np.asarray(value[:1]) for key, value in train.items()}
  if "label" not in rows and "label" in like.split(like.train_split):
    rows["label"] = np.zeros((1,), np.int32)  # an online probe's head needs the classes
  return type(like)({"train": rows}, like.modality, "train", info)


def load_finished_run(
  workdir: str,
  like: Any,
  model_overrides: dict[str, Any] | None = None,
  requires: tuple[type[Capability], ...] = (EncoderView,),
  what: str = "init_from",
) -> FinishedRun:
  """Rebuilds and restores the run in `workdir` (see the module docstring): its task must have
  the capabilities `requires`; `like` is the reader's dataset (its modality and vocabulary
  must match the run's; its info completes the run's recorded facts).

  `model_overrides` change options of the run's model that keep its shapes (dropout, remat,
  dtype); a change of shape is caught when the weights are loaded."""
  if is_model_directory(workdir):
    return _load_model_directory(workdir, like, model_overrides, requires, what)
  config = check_source(workdir, requires, what).copy_and_resolve_references()
  _check_modality(config, like, workdir, what)
  config.model_kwargs.update(model_overrides or {})
  pretraining_info = config.get("dataset_info", {})
  # The text pieces must agree; sentinels a T5 run appended never occur in the fine-tune's text.
  pieces = lambda info: info.get("text_vocab_size", info.get("vocab_size"))
  if "vocab_size" in like.info and pieces(pretraining_info) != pieces(like.info):
    raise ConfigError(
      f"The run in {what}={workdir!r} has a vocabulary of "
      f"{pieces(pretraining_info)} pieces, this data {pieces(like.info)}: set "
      f"config.data.tokenizer_path={pretraining_info.get('tokenizer_path')!r}."
    )
  rows = shape_only_dataset(config, like)
  task = TASKS.build(config.task, config.task_kwargs.to_dict(), config, rows)
  directory = os.path.join(workdir, "checkpoints")
  if not saved_steps(directory):
    raise MissingInputError(f"{what}={workdir!r} has no checkpoint under {directory}.")
  checkpoints = Checkpointer(directory, read_only=True)
  try:
    # A damaged newest step falls back to the newest readable one (left in place: another
    # run's workdir is only read).
    step, state = checkpoints.restore_latest_arrays()
  finally:
    checkpoints.close()
  variables = {"params": state["params"], "model_state": state.get("model_state") or {}}
  checkpoint = os.path.join(checkpoints.directory, str(step))
  return FinishedRun(config, task, variables, step, checkpoint, rows.split("train"))


def _check_modality(config: ml_collections.ConfigDict, like: Any, source: str, what: str) -> None:
  modality = TASKS.get(config.task).modality
  if modality != like.modality:
    raise ConfigError(
      f"{what}={source!r} pretrained {config.task!r} on {modality} data; this data is "
      f"{like.modality} data: point {what} at a run on {like.modality} data."
    )


def _load_model_directory(
  path: str,
  like: Any,
  model_overrides: dict[str, Any] | None,
  requires: tuple[type[Capability], ...],
  what: str,
) -> FinishedRun:
  """A model directory as the run it stands for, at step 0 (`ssl_jax.runs.model_source`)."""
  _check_modality(check_source(path, requires, what), like, path, what)
  config, variables = directory_run_parts(path, like, model_overrides, what)
  rows = shape_only_dataset(config, like)
  task = TASKS.build(config.task, config.task_kwargs.to_dict(), config, rows)
  return FinishedRun(config, task, variables, 0, path, rows.split("train"))

"""A finished pretraining run, read back for fine-tuning: its task rebuilt by name from its
`config.json`, its latest checkpoint restored through `ssl_jax.checkpoint.Checkpointer`, and
its encoder asked for through the `EncoderView` capability. Nothing here knows task names."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from ssl_jax.checkpoint import Checkpointer, leaf_differences, saved_steps
from ssl_jax.data.source import Dataset
from ssl_jax.errors import CheckpointMismatchError, MissingInputError
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.run_config import HISTORY, TRAIN_FIELDS, read_run_config
from ssl_jax.tasks.base import Task
from ssl_jax.tasks.capabilities import EncoderView, describe_missing


@dataclasses.dataclass
class PretrainedRun:
  """config: the run's config.json; task: the pretraining task rebuilt (an EncoderView);
  variables: {"params", "model_state"} of its latest checkpoint (numpy); checkpoint: the
  directory of that checkpoint step."""

  config: ml_collections.ConfigDict
  task: Task
  variables: dict[str, Any]
  checkpoint: str
  rows: dict[str, np.ndarray]  # one (zero) training row of the pretraining data's shapes

  def example(self) -> dict[str, np.ndarray]:
    """A batch the pretraining task's `init` accepts (its parameters' shapes)."""
    return dict(self.rows)

  def encoder_variables(self) -> dict[str, Any]:
    return self.task.encoder_variables(self.variables["params"], self.variables["model_state"])

  def split_encoder(self) -> tuple[dict[str, Any], tuple[Any, Any]]:
    return self.task.split_encoder(self.variables["params"], self.variables["model_state"])


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config.json of a pretraining workdir; a clear error when there is none."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise MissingInputError(
      f"init_from={workdir!r}: {path} does not exist. Point init_from at the workdir of a "
      "finished pretraining run."
    )
  recorded = read_run_config(workdir)
  recorded.pop(HISTORY, None)
  # dataset_info may hold special-token names with dots (T5's "<extra_id_0..99>").
  return ml_collections.ConfigDict(recorded, allow_dotted_keys=True)


def check_source(workdir: str) -> ml_collections.ConfigDict:
  """Checks, before any work, that `workdir` holds a run whose task exposes an encoder."""
  config = read_config(workdir)
  task_class = TASKS.get(config.task)
  if not issubclass(task_class, EncoderView):
    raise ConfigError(
      describe_missing(f"Fine-tuning from init_from={workdir!r}", config.task, [EncoderView])
    )
  return config


def shape_only_dataset(config: ml_collections.ConfigDict, like: Dataset) -> Dataset:
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
  return Dataset({"train": rows}, like.modality, "train", info)


def load_pretrained_run(
  workdir: str, like: Dataset, model_overrides: dict[str, Any] | None = None
) -> PretrainedRun:
  """Rebuilds and restores the pretraining run in `workdir` (see the module docstring).

  `model_overrides` change options of the pretrained model that keep its shapes (dropout,
  remat, dtype); a change of shape is caught when the weights are loaded."""
  config = check_source(workdir).copy_and_resolve_references()
  modality = TASKS.get(config.task).modality
  if modality != like.modality:
    raise ConfigError(
      f"init_from={workdir!r} pretrained {config.task!r} on {modality} data; this data is "
      f"{like.modality} data: point init_from at a pretraining on {like.modality} data."
    )
  config.model_kwargs.update(model_overrides or {})
  pretraining_info = config.get("dataset_info", {})
  # The text pieces must agree; sentinels a T5 run appended never occur in the fine-tune's text.
  pieces = lambda info: info.get("text_vocab_size", info.get("vocab_size"))
  if "vocab_size" in like.info and pieces(pretraining_info) != pieces(like.info):
    raise ConfigError(
      f"The pretraining run in {workdir!r} has a vocabulary of "
      f"{pieces(pretraining_info)} pieces, this data {pieces(like.info)}: set "
      f"config.data.tokenizer_path={pretraining_info.get('tokenizer_path')!r}."
    )
  rows = shape_only_dataset(config, like)
  task = TASKS.build(config.task, config.task_kwargs.to_dict(), config, rows)
  directory = os.path.join(workdir, "checkpoints")
  if not saved_steps(directory):
    raise MissingInputError(f"init_from={workdir!r} has no checkpoint under {directory}.")
  checkpoints = Checkpointer(directory, read_only=True)
  try:
    # A damaged newest step falls back to the newest readable one (left in place: another
    # run's workdir is only read).
    step, state = checkpoints.restore_latest_arrays()
  finally:
    checkpoints.close()
  variables = {"params": state["params"], "model_state": state.get("model_state") or {}}
  checkpoint = os.path.join(checkpoints.directory, str(step))
  return PretrainedRun(config, task, variables, checkpoint, rows.split("train"))


def check_shapes(pretrained: Any, fresh: Any, source: str) -> None:
  """Raises CheckpointMismatchError listing the leaves whose shapes differ."""
  paths = lambda tree: {
    jax.tree_util.keystr(path): np.shape(leaf)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }
  have, want = paths(pretrained), paths(fresh)
  problems = leaf_differences(have, want, "model", absent=None)
  if problems:
    raise CheckpointMismatchError(
      f"The encoder in {source} does not match the one this config builds "
      f"({len(problems)} differences, e.g. {problems[:3]}). Use the pretraining run's "
      "data options (e.g. config.data.tokenizer_path) and do not override model_kwargs."
    )


def place_like(value: Any, like: Any) -> Any:
  """`value` (numpy) as `like`'s dtype on `like`'s sharding, leaf by leaf."""
  return jax.tree.map(
    lambda new, old: jax.device_put(np.asarray(new).astype(old.dtype), old.sharding), value, like
  )

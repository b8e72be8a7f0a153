"""A Hugging Face model directory read as a finished run, so every reader of `init_from`
(fine-tuning, token and pair classification, zero-shot scoring, reward fine-tuning, active
learning's learners, continued pretraining) starts from public checkpoints unchanged.

Each architecture is registered by the task that carries it (`register_architecture`:
`BertForPreTraining` by `bert_pretraining`, `GPT2LMHeadModel` by `causal_lm`, ...), with the
function that converts its weights into that task's parameter tree. The directory then stands
for a run of that task at step 0: its config names the task and the model options the
directory's config.json gives (sizes, norm epsilon, positions, vocabulary); its rows have the
model's full length. Like this package's other readers it knows no task by name."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import numpy as np

from ssl_jax.capabilities import Capability, EncoderView, describe_missing
from ssl_jax.errors import ConfigError
from ssl_jax.registry import MODELS, TASKS
from ssl_jax.runs.model_dir import ModelDirectory, read_model_directory
from ssl_jax.runs.record import TRAIN_FIELDS

# (state dict, config.json) -> (the flax model the task builds, the task's params[, the task's
# model state: batch statistics]).
Convert = Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], tuple[Any, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Architecture:
  """How a registered Hugging Face architecture becomes a run: `task` and `model` (registry
  names), `convert`, and `fields`: {column: (shape after the row length, dtype)} of the rows
  besides `tokens` (e.g. BERT's token types and pair label)."""

  task: str
  model: str
  convert: Convert
  fields: Mapping[str, tuple[tuple[int, ...], str]] = dataclasses.field(default_factory=dict)
  per_position: tuple[str, ...] = ()  # the fields that are [row length, ...]


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(name: str, architecture: Architecture) -> None:
  """Declares that config.json's `architectures[0] == name` is read as `architecture`."""
  if ARCHITECTURES.get(name, architecture) != architecture:
    raise ValueError(f"Architecture {name!r} is already registered.")
  ARCHITECTURES[name] = architecture


def _read(path: str) -> ModelDirectory:
  return read_model_directory(path, tuple(ARCHITECTURES))


def directory_config(directory: ModelDirectory, model: Any) -> ml_collections.ConfigDict:
  """The config of the run a model directory stands for: task, model and the model's options
  as converted (each option the registered model takes, at the converted module's value), and
  one row's fields: a text model's full length of tokens, a vision model's images."""
  architecture = ARCHITECTURES[directory.architecture]
  defaults = MODELS.option_defaults(architecture.model)
  options = {key: getattr(model, key) for key in defaults}
  info: dict[str, Any] = {}
  if hasattr(model, "vocab_size"):  # a text model
    options.update(vocab_size=model.vocab_size, max_length=model.max_length)
    if hasattr(model, "num_token_types"):
      options["num_token_types"] = model.num_token_types
    length = model.max_length
    fields = {"tokens": [[length], "int32"]}
    info = {"vocab_size": model.vocab_size, "tokenizer_path": directory.path}
  else:
    length, fields = 0, {}
  for key, (shape, dtype) in architecture.fields.items():
    prefix = [length] if key in architecture.per_position else []
    fields[key] = [prefix + list(shape), dtype]
  if not info:  # a vision model: a ViT is made for one image size, a ResNet takes ImageNet's
    size = getattr(model, "image_size", 224)
    fields["image"] = [[size, size, 3], "float32"]
  return ml_collections.ConfigDict(
    {
      "task": architecture.task,
      "task_kwargs": {},
      "model": architecture.model,
      "model_kwargs": options,
      "augment": {},
      "init_from_directory": directory.path,
      "dataset_info": {**info, TRAIN_FIELDS: fields},
    },
    allow_dotted_keys=True,
  )


def check_directory(
  path: str, requires: tuple[type[Capability], ...] = (EncoderView,), what: str = "init_from"
) -> ml_collections.ConfigDict:
  """Before any weight is read: a supported model directory whose task has `requires`.
  Returns {"task": ...} (what a caller of `check_source` reads)."""
  directory = _read(path)
  task = ARCHITECTURES[directory.architecture].task
  task_class = TASKS.get(task)
  missing = [c for c in requires if not issubclass(task_class, c)]
  if missing:
    raise ConfigError(
      describe_missing(f"{what}={path!r} ({directory.architecture})", task, missing)
    )
  return ml_collections.ConfigDict({"task": task, "dataset_info": {"tokenizer_path": path}})


def _digest(path: str) -> str:
  file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
  if not os.path.isfile(file):
    return ""
  with open(file, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def check_tokenizer(path: str, ours: str | None, what: str) -> None:
  """The data must be tokenized by the directory's own tokenizer (its ids are the model's):
  `ours` is the data's tokenizer path."""
  if not ours or _digest(ours) != _digest(path) or not _digest(path):
    raise ConfigError(
      f"{what}={path!r} is a model directory; its model reads its own tokenizer's ids, but this "
      f"data is tokenized by {ours or 'a tokenizer of its own'!r}: set "
      f"config.data.tokenizer_path={path!r}."
    )


def directory_run_parts(
  path: str, like: Any, model_overrides: dict[str, Any] | None, what: str
) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """(the config of the run `path` stands for, its variables {"params", "model_state"}) with
  `model_overrides` applied (dropout, dtype, remat: options that keep the shapes)."""
  directory = _read(path)
  if like.modality == "text" and "vocab_size" in like.info:
    check_tokenizer(path, like.info.get("tokenizer_path"), what)
  model, params, model_state = _converted(directory, directory.state_dict())
  config = directory_config(directory, model)
  config.model_kwargs.update(model_overrides or {})
  return config, {"params": params, "model_state": model_state}


def _converted(directory: ModelDirectory, state_dict: dict) -> tuple[Any, Any, Any]:
  """(model, params, model state) of a directory's weights (a converter may give no state)."""
  try:
    converted = ARCHITECTURES[directory.architecture].convert(state_dict, directory.hf_config)
  except (KeyError, ValueError, TypeError) as error:  # names or shapes config.json does not fit
    raise ConfigError(
      f"Model directory {directory.path!r} ({directory.architecture}): its weights do not "
      f"match its config.json ({error})."
    ) from error
  return converted if len(converted) == 3 else (*converted, {})


def directory_model_options(path: str) -> tuple[str, dict[str, Any]]:
  """(model name, model_kwargs) of the model a directory holds, from its config.json and its
  weights' shapes (no weight is read)."""
  directory = _read(path)
  model, _, _ = _converted(directory, directory.shape_dict())
  config = directory_config(directory, model)
  return config.model, config.model_kwargs.to_dict()

"""A Hugging Face model directory as `save_pretrained` writes it: `config.json`, the weights as
`model.safetensors` or shards listed in `model.safetensors.index.json`, and tokenizer files.

Weights are read with safetensors' flax loader (bfloat16 included) into float32 numpy arrays,
never with pickle: a directory holding only `pytorch_model.bin` is refused with the command
that converts it. torch and transformers are not needed."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np
from safetensors import safe_open

from ssl_jax.errors import ConfigError, DataError, MissingInputError

CONFIG_JSON = "config.json"
WEIGHTS = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5")


# timm's files name no architecture that says how to read them: the weights' names do.
TIMM_FAMILIES = {
  "timm:resnet": ("conv1.weight", "layer1.0.conv1.weight"),
  "timm:vit": ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight"),
}


def is_model_directory(path: str) -> bool:
  """A directory whose config.json is a model's (`model_type` or `architectures`, or timm's
  `architecture`), not an ssl_jax run's (which names its `task`), or a timm `.safetensors`
  file; `read_model_directory` checks the rest."""
  if path and path.endswith(".safetensors"):
    return os.path.isfile(path)
  file = os.path.join(path, CONFIG_JSON) if path else ""
  if not file or not os.path.isfile(file):
    return False
  try:
    with open(file) as f:
      fields = json.load(f)
  except (OSError, json.JSONDecodeError):
    return False
  return (
    isinstance(fields, dict)
    and "task" not in fields
    and ("model_type" in fields or "architectures" in fields or "architecture" in fields)
  )


def timm_architecture(files: tuple[str, ...]) -> str:
  """The `TIMM_FAMILIES` entry whose marker tensors the files hold ("" for none)."""
  names = set()
  for file in files:
    with _opened(file) as f:
      names.update(f.keys())
  return next((arch for arch, keys in TIMM_FAMILIES.items() if set(keys) <= names), "")


@dataclasses.dataclass(frozen=True)
class ModelDirectory:
  """path; hf_config: config.json; architecture: its `architectures[0]`; files: the safetensors
  files holding the weights."""

  path: str
  hf_config: dict[str, Any]
  architecture: str
  files: tuple[str, ...]

  def state_dict(self) -> dict[str, np.ndarray]:
    """{name: float32 numpy array} of every tensor in the weight files."""
    weights = {}
    for file in self.files:
      with _opened(file) as f:
        for name in f.keys():
          weights[name] = np.asarray(f.get_tensor(name), np.float32)
    return weights

  def shape_dict(self) -> dict[str, np.ndarray]:
    """{name: zeros of the tensor's shape} without reading a weight (broadcast views: no
    memory), for what only needs the shapes (the model's options)."""
    shapes = {}
    for file in self.files:
      with _opened(file) as f:
        for name in f.keys():
          shapes[name] = np.broadcast_to(np.float32(0), f.get_slice(name).get_shape())
    return shapes


def _opened(file: str):
  """safetensors' reader of `file`; a file it cannot read is one DataError naming it."""
  try:
    return safe_open(file, framework="flax")
  except Exception as error:  # safetensors raises its own SafetensorError (an Exception)
    raise DataError(f"{file} is not a readable safetensors file ({error}).") from error


def weight_files(path: str) -> tuple[str, ...]:
  """The safetensors files of a model directory (one file or the index's shards)."""
  single, index = os.path.join(path, WEIGHTS), os.path.join(path, SHARD_INDEX)
  if os.path.isfile(single):
    return (single,)
  if os.path.isfile(index):
    with open(index) as f:
      shards = sorted(set(json.load(f).get("weight_map", {}).values()))
    missing = [s for s in shards if not os.path.isfile(os.path.join(path, s))]
    if not shards or missing:
      raise MissingInputError(
        f"{index} lists shards {missing or shards} that are not in {path!r}."
        if missing
        else f"{index} lists no shards."
      )
    return tuple(os.path.join(path, s) for s in shards)
  pickled = [name for name in PICKLE_WEIGHTS if os.path.isfile(os.path.join(path, name))]
  if pickled:
    raise ConfigError(
      f"Model directory {path!r} holds its weights only as {pickled[0]} (pickle), which ssl_jax "
      "never loads. Convert it once with transformers: AutoModel...from_pretrained(dir)"
      ".save_pretrained(new_dir) writes model.safetensors."
    )
  raise MissingInputError(
    f"Model directory {path!r} has no {WEIGHTS} and no {SHARD_INDEX}: it holds no weights."
  )


def read_model_directory(path: str, architectures: tuple[str, ...]) -> ModelDirectory:
  """Checks (before any weight is read) that `path` is a model directory of one of
  `architectures` with safetensors weights."""
  if path.endswith(".safetensors") and os.path.isfile(path):  # a bare timm weights file
    return _checked(path, {}, timm_architecture((path,)), (path,), architectures)
  if not os.path.isdir(path):
    raise MissingInputError(f"Model directory {path!r} does not exist.")
  config_file = os.path.join(path, CONFIG_JSON)
  if not os.path.isfile(config_file):
    raise MissingInputError(f"{path!r} has no {CONFIG_JSON}: it is not a model directory.")
  with open(config_file) as f:
    try:
      hf_config = json.load(f)
    except json.JSONDecodeError as error:
      raise ConfigError(f"{config_file} is not valid JSON ({error}).") from error
  named = hf_config.get("architectures") or []
  architecture = named[0] if named else ""
  files = weight_files(path)
  if not named and "architecture" in hf_config:  # timm's config.json (`save_for_hf`)
    architecture = timm_architecture(files) or str(hf_config["architecture"])
  return _checked(path, hf_config, architecture, files, architectures)


def _checked(
  path: str,
  hf_config: dict[str, Any],
  architecture: str,
  files: tuple[str, ...],
  architectures: tuple[str, ...],
) -> ModelDirectory:
  if architecture not in architectures:
    raise ConfigError(
      f"Model directory {path!r} holds architecture {architecture or 'unnamed'!r} "
      f"(model_type {hf_config.get('model_type')!r}); valid: {sorted(architectures)}."
    )
  return ModelDirectory(path, hf_config, architecture, files)

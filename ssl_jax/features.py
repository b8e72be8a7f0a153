"""Features (and logits) of any finished run or model directory for your own inputs, in a
notebook or a script, batched over the device mesh:

  from ssl_jax import features
  model = features.load("/tmp/simclr_digits")          # a workdir, or a model directory
  out = model(images)                                   # uint8 [N, H, W, C] or floats in [0, 1]
  out["features"]                                       # [N, D] numpy
  text = features.load("/models/bert-base-uncased")
  text(["first text", "second text"])["features"]       # tokenized by the source's tokenizer

`out["logits"]` is there when the run classifies (a fine-tune: [N, classes]). Texts become the
rows the run trained on (`[CLS] text [SEP]`, cut to its row length, with its tokenizer);
features are what its evaluators read (`represent`: pooled, inference mode). Inputs are padded
to whole batches (static shapes: one compilation per batch size) and sharded over the mesh.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import numpy as np

import ssl_jax.tasks  # noqa: F401  (registers the tasks a run is rebuilt with)
from ssl_jax import parallel
from ssl_jax.capabilities import Classifier, Represents
from ssl_jax.data.source import Dataset, unit_float_images
from ssl_jax.data.text_classification import encode_rows
from ssl_jax.data.text_corpus import vocabulary_info
from ssl_jax.data.tokenizer import load_tokenizer
from ssl_jax.errors import ConfigError
from ssl_jax.registry import TASKS
from ssl_jax.runs.finished import FinishedRun, check_source, load_finished_run, read_config
from ssl_jax.runs.model_dir import is_model_directory
from ssl_jax.runs.record import TRAIN_FIELDS


def recorded_dataset(source: str) -> Dataset:
  """A one-row dataset with the facts a run (or model directory) recorded: what rebuilding it
  needs when none of its data is at hand."""
  if is_model_directory(source):
    modality = TASKS.get(check_source(source, requires=()).task).modality
    info = vocabulary_info(load_tokenizer(source)) if modality == "text" else {}
  else:
    config = read_config(source)
    info = config.get("dataset_info", {}).to_dict()
    modality = TASKS.get(config.task).modality
  info.pop(TRAIN_FIELDS, None)
  return Dataset({"train": {"tokens": np.zeros((1, 2), np.int32)}}, modality, "train", info)


@dataclasses.dataclass
class FeatureModel:
  """A loaded source: call it on inputs (see the module docstring)."""

  source: str
  run: FinishedRun
  batch_size: int = 256

  @property
  def modality(self) -> str:
    return self.run.task.modality

  def __call__(self, inputs: np.ndarray | Sequence[str]) -> dict[str, np.ndarray]:
    rows = self._rows(inputs)
    mesh = parallel.make_mesh({"data": -1, "fsdp": 1})
    size = -(-self.batch_size // mesh.size) * mesh.size
    count = len(next(iter(rows.values())))
    padded = {k: np.concatenate([v, np.repeat(v[-1:], -count % size, 0)]) for k, v in rows.items()}
    outputs: dict[str, list[np.ndarray]] = {}
    with jax.set_mesh(mesh):
      variables = parallel.replicate_on_current_mesh(
        (self.run.variables["params"], self.run.variables["model_state"])
      )
      for start in range(0, len(next(iter(padded.values()))), size):
        batch = parallel.global_batch(
          {k: v[start : start + size] for k, v in padded.items()}, parallel.batch_sharding(mesh)
        )
        for name, value in self._compute(variables, batch).items():
          outputs.setdefault(name, []).append(np.asarray(jax.device_get(value)))
    return {name: np.concatenate(parts)[:count] for name, parts in outputs.items()}

  @functools.cached_property
  def _compute(self):
    task = self.run.task

    def compute(variables, batch):
      params, model_state = variables
      batch = unit_float_images(batch)
      out = {"features": task.represent(params, model_state, batch)}
      if isinstance(task, Classifier):
        out["logits"] = task.logits(params, model_state, batch, None, train=False)
      return out

    return jax.jit(compute)

  def _rows(self, inputs) -> dict[str, np.ndarray]:
    if self.modality == "image":
      images = np.asarray(inputs)
      expected = self.run.rows["image"].shape[1:]
      if images.ndim != 4 or images.shape[1:] != expected:
        raise ConfigError(
          f"{self.source!r} takes images of shape [N, {', '.join(map(str, expected))}]; got "
          f"{list(images.shape)}."
        )
      return {"image": images}
    if isinstance(inputs, str) or not all(isinstance(t, str) for t in inputs):
      raise ConfigError(f"{self.source!r} is a text model: pass a list of strings.")
    tokenizer = load_tokenizer(self.run.config.dataset_info.tokenizer_path)
    return {"tokens": encode_rows(tokenizer, list(inputs), self.run.rows["tokens"].shape[1])}


def load(source: str, batch_size: int = 256) -> FeatureModel:
  """A finished run's workdir or a model directory, ready to give features (see the module
  docstring). Anything that gives no features is refused, naming what it is."""
  run = load_finished_run(source, recorded_dataset(source), requires=(Represents,), what="source")
  return FeatureModel(source, run, batch_size)

"""What an evaluator gets: the task, its trained variables, the data, and cached features."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from ssl_jax import parallel
from ssl_jax.data.label_budget import labelled_indices
from ssl_jax.data.pipeline import batches_in_order
from ssl_jax.data.source import Dataset, unit_float_images
from ssl_jax.progress import Progress
from ssl_jax.registry import ConfigError
from ssl_jax.tasks.base import Task

TRAINED, RANDOM_INIT, RAW_PIXELS = "trained", "random_init", "raw_pixels"
FEATURE_SETS = (TRAINED, RANDOM_INIT, RAW_PIXELS)


@dataclasses.dataclass
class EvalContext:
  """Evaluation inputs shared by every evaluator of one run.

  Attributes:
    task: the pretext task (its `represent` gives features).
    variables: (params, model_state) after training.
    initial_variables: builds the (params, model_state) the run started from (the same seed),
      for the randomly initialised baseline.
    dataset: the run's data; evaluators use its labelled splits.
    mesh: where features are computed; batches are sharded over its batch axes.
    batch_size: global evaluation batch size (divisible by the number of devices).
    seed: seed for evaluation randomness (label draws, eval masks).
    name: row label of the trained features (the task name).
  """

  task: Task
  variables: tuple[Any, Any]
  initial_variables: Callable[[], tuple[Any, Any]]
  dataset: Dataset
  mesh: Mesh
  batch_size: int
  seed: int
  name: str
  # Shared by every evaluation of a run (periodic ones included): the features of the
  # random-init and raw-pixel baselines, which do not change during training, and the
  # compiled feature function.
  shared: dict[Any, Any] = dataclasses.field(default_factory=dict)
  _cache: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)
  _initial: tuple[Any, Any] | None = None

  def _represent(self) -> Callable[..., Any]:
    if "represent" not in self.shared:
      self.shared["represent"] = self.jit(self.task.represent)
    return self.shared["represent"]

  def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn(params, model_state, batch)` jitted for `apply`: uint8 images become floats in [0, 1]
    on device, and the output is replicated so every process can read all of it."""
    return jax.jit(
      lambda params, model_state, batch: fn(params, model_state, unit_float_images(batch)),
      out_shardings=parallel.replicated(self.mesh),
    )

  def row_name(self, feature_set: str) -> str:
    return {TRAINED: self.name, RANDOM_INIT: "random init", RAW_PIXELS: "raw pixels"}[feature_set]

  def labels(self, split: str) -> np.ndarray:
    """[N] int labels of a split, read into memory (-1 marks an unlabelled record)."""
    return np.asarray(self.dataset.split(split)["label"])

  def features(self, feature_set: str, split: str) -> np.ndarray:
    """[N, D] features of a split for "trained", "random_init" or "raw_pixels" (cached)."""
    if feature_set not in FEATURE_SETS:
      raise ValueError(f"Unknown feature set {feature_set!r}; valid: {FEATURE_SETS}.")
    key = (feature_set, split)
    cache = self._cache if feature_set == TRAINED else self.shared
    if key not in cache:
      arrays = self.dataset.split(split)
      if feature_set == RAW_PIXELS:
        images = unit_float_images({"image": np.asarray(arrays["image"])})["image"]
        cache[key] = images.reshape(len(images), -1).astype(np.float32)
      else:
        if feature_set == TRAINED:
          variables = self.variables
        else:
          if self._initial is None:
            self._initial = self.initial_variables()
          variables = self._initial
        cache[key] = self.apply(
          self._represent(), variables, arrays, label=f"{feature_set} features of {split}"
        )
    return cache[key]

  def split_sums(
    self, fn: Callable[..., jax.Array], split: str, keep_labels: bool = False
  ) -> np.ndarray:
    """Sums over `split` of `fn(params, model_state, batch, key)` -> [batch, K] per-row
    statistics, with the trained variables, as a float64 [K].

    Each batch gets its own fixed key (folded from the seed and the batch index, which rides
    in the batch so one compiled function serves every batch): random masking or corruption
    is the same at every evaluation.
    """
    base_key = jax.random.key(self.seed)

    def batch_sums(params, model_state, batch):
      key = jax.random.fold_in(base_key, batch.pop("index")[0])
      return fn(params, model_state, batch, key)

    rows = dict(self.dataset.split(split))
    num_rows = len(rows["tokens"] if "tokens" in rows else next(iter(rows.values())))
    rows["index"] = np.repeat(
      np.arange(-(-num_rows // self.batch_size), dtype=np.int32), self.batch_size
    )[:num_rows]
    sums = self.apply(
      jax.jit(batch_sums), self.variables, rows, keep_labels, label=f"{split} batches"
    )
    return sums.astype(np.float64).sum(0)

  def apply(
    self,
    fn: Callable[..., Any],
    variables: tuple[Any, Any],
    arrays: dict[str, np.ndarray],
    keep_labels: bool = False,
    label: str = "batches",
  ) -> np.ndarray:
    """Runs `fn(params, model_state, batch)` over every example in order; returns numpy.
    Labels are not sent to the device unless `keep_labels`. Long passes show progress
    (`label`: what is being computed)."""
    sharding = parallel.batch_sharding(self.mesh)
    outputs = []
    rows = len(next(iter(arrays.values())))
    with Progress(f"{self.name}: {label}", -(-rows // self.batch_size)) as progress:
      for batch, valid in batches_in_order(arrays, self.batch_size):
        if not keep_labels:
          batch.pop("label", None)  # Nothing the model reads; saves the transfer.
        local = _process_slice(batch)
        out = fn(*variables, parallel.global_batch(local, sharding))
        outputs.append(np.asarray(multihost_utils.process_allgather(out, tiled=True))[:valid])
        progress.advance()
    return np.concatenate(outputs)


def check_feature_sets(options: dict[str, Any], valid: Sequence[str] = FEATURE_SETS) -> None:
  """Raises ConfigError if an evaluator's `feature_sets` option names a set not in `valid`."""
  unknown = sorted(set(options.get("feature_sets", ())) - set(valid))
  if unknown:
    raise ConfigError(f"Unknown feature_sets {unknown}; valid: {list(valid)}.")


def _process_slice(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Every process builds the same global eval batch and contributes its own slice."""
  count, index = jax.process_count(), jax.process_index()
  size = len(next(iter(batch.values()))) // count
  return {k: v[index * size : (index + 1) * size] for k, v in batch.items()}


def labelled_subsets(labels: np.ndarray, per_class: int, draws: int, seed: int) -> np.ndarray:
  """[draws, N] 0/1 weights selecting `per_class` examples of each class (0 = all examples);
  the draws are `label_budget.labelled_indices`', so a fine-tune run with
  `config.label_budget` sees the same examples as the probe at that budget and draw."""
  weights = np.zeros((draws, len(labels)), np.float32)
  for draw in range(draws):
    if per_class == 0:
      weights[draw] = 1.0
      continue
    weights[draw, labelled_indices(labels, per_class, draw, seed)] = 1.0
  return weights


def standalone_context(
  task: Any, variables: Any, dataset: Dataset, batch_size: int, seed: int
) -> EvalContext:
  """An EvalContext outside a training run (a finished run read back) over every local
  device, for reading features and outputs."""
  mesh = parallel.make_mesh({"data": -1, "fsdp": 1})
  batch_size = -(-batch_size // mesh.size) * mesh.size
  return EvalContext(
    task=task,
    variables=variables,
    initial_variables=lambda: variables,
    dataset=dataset,
    mesh=mesh,
    batch_size=batch_size,
    seed=seed,
    name=type(task).__name__,
  )

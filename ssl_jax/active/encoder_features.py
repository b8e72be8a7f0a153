"""Frozen features of a pretraining run's encoder on every example of a dataset's splits: what
the cold start queries from and what the `linear_head` learner trains on, computed once."""

from __future__ import annotations

import os

import numpy as np

from ssl_jax.capabilities import Represents
from ssl_jax.data.source import Dataset
from ssl_jax.errors import ConfigError
from ssl_jax.evals.context import TRAINED, standalone_context
from ssl_jax.files import write_npz
from ssl_jax.runs.checkpoints import saved_steps
from ssl_jax.runs.finished import load_finished_run


def pretrained_features(
  init_from: str, dataset: Dataset, splits: tuple[str, ...], cache: str, batch_size: int = 256
) -> dict[str, np.ndarray]:
  """{split: [N, D] float32} features of `init_from`'s encoder, cached in `cache` (an .npz
  that names its run and newest step, so a cache of another run or an older step of this one
  is recomputed)."""
  steps = saved_steps(os.path.join(init_from, "checkpoints"))
  source = f"{os.path.abspath(init_from)}@{max(steps) if steps else 'none'}"
  if os.path.isfile(cache):
    with np.load(cache) as saved:
      if str(saved["init_from"]) == source and all(split in saved for split in splits):
        return {split: saved[split] for split in splits}
  run = load_finished_run(init_from, dataset)
  if not isinstance(run.task, Represents):
    raise ConfigError(
      f"The run in {init_from!r} ({run.config.task}) gives no features (Represents); "
      "active learning needs an encoder to query from."
    )
  variables = (run.variables["params"], run.variables["model_state"])
  ctx = standalone_context(run.task, variables, dataset, batch_size, seed=0)
  features = {split: ctx.features(TRAINED, split).astype(np.float32) for split in splits}
  write_round_outputs(cache, dict(init_from=np.asarray(source), **features))
  return features


def write_round_outputs(path: str, outputs: dict[str, np.ndarray]) -> None:
  """Atomically saves a round's pool outputs (features, probs, mc_probs) as .npz."""
  write_npz(path, outputs)


def read_round_outputs(path: str) -> dict[str, np.ndarray]:
  with np.load(path) as saved:
    return {name: saved[name] for name in saved.files}

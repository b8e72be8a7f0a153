"""Putting a finished run's weights (read by `ssl_jax.runs.finished`) into a fresh train state:
shapes checked leaf by leaf, values cast and placed like the fresh leaves."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ssl_jax.errors import CheckpointMismatchError
from ssl_jax.runs.checkpoints import leaf_differences


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

"""Weight-layout helpers shared by the Hugging Face conversions (`ssl_jax.models.huggingface`,
`ssl_jax.models.hf_bert`): torch Linear / LayerNorm <-> flax Dense / DenseGeneral / LayerNorm
as plain numpy arrays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Array = np.ndarray
Params = dict[str, Any]


def as_numpy(state_dict: Mapping[str, Any]) -> dict[str, Array]:
  return {
    k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float32)
    for k, v in state_dict.items()
  }


def check_keys(state_dict: Mapping[str, Array], needed: list[str], what: str) -> None:
  missing = [k for k in needed if k not in state_dict]
  if missing:
    raise KeyError(
      f"Not a {what} state dict: missing {missing[:5]}{' and more' if len(missing) > 5 else ''}."
    )


def heads_in(w: Array, b: Array, heads: int) -> dict[str, Array]:
  """torch Linear (out, in) -> DenseGeneral kernel [in, heads, head_dim], bias [heads, hd]."""
  width = w.shape[1]
  return {"kernel": w.T.reshape(width, heads, -1), "bias": b.reshape(heads, -1)}


def heads_out(w: Array, b: Array, heads: int) -> dict[str, Array]:
  """torch Linear (out, in) -> DenseGeneral kernel [heads, head_dim, out], bias [out]."""
  return {"kernel": w.T.reshape(heads, -1, w.shape[0]), "bias": b}


def dense(w: Array, b: Array) -> dict[str, Array]:
  return {"kernel": w.T, "bias": b}


def norm(w: Array, b: Array) -> dict[str, Array]:
  return {"scale": w, "bias": b}


def linear_from(dense: Mapping[str, Any]) -> tuple[Array, Array]:
  """Flax Dense / DenseGeneral params -> torch Linear (weight (out, in), bias)."""
  kernel, bias = np.asarray(dense["kernel"]), np.asarray(dense["bias"])
  if kernel.ndim == 3 and bias.ndim == 2:  # [in, heads, hd]
    return kernel.reshape(kernel.shape[0], -1).T, bias.reshape(-1)
  if kernel.ndim == 3:  # [heads, hd, out]
    return kernel.reshape(-1, kernel.shape[-1]).T, bias
  return kernel.T, bias

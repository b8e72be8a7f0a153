"""Bottleneck adapters (Houlsby et al. 2019) for any Flax linen model, without touching its
code: a small residual MLP after the output of chosen layers,

    y  ->  y + up(gelu(down(y)))        down: [width, size], up: [size, width]

placed by default after each Transformer block's attention output projection and MLP output
(Houlsby's two adapters per block; `targets=r"mlp_out$"` gives Pfeiffer's one). `up` starts at
zero, so the adapted model starts equal to the base model. The adapters are a pytree of their
own, {module path: {"down", "down_bias", "up", "up_bias"}}, like LoRA's, and train with the
head while the base model stays frozen.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.adapt.lora import AdaptedLayer, find_layers

PyTree = Any

__all__ = ["AdapterConfig", "find_layers", "init_adapters", "apply"]


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
  """`size`: bottleneck width; `targets`: regular expression searched in the "/"-joined path
  of the Dense/DenseGeneral/Conv layers whose outputs get an adapter."""

  size: int = 16
  targets: str = r"(attention/out|mlp_out)$"


def init_adapters(key: jax.Array, layers: list[AdaptedLayer], config: AdapterConfig) -> PyTree:
  """Adapters for the layers matching `config.targets`: down ~ N(0, 1/width), up = 0."""
  chosen = [layer for layer in layers if re.search(config.targets, layer.path)]
  if not chosen:
    raise ValueError(
      f"Adapter targets {config.targets!r} match no layer; the layers are: "
      f"{[layer.path for layer in layers]}."
    )
  adapters = {}
  for layer, layer_key in zip(chosen, jax.random.split(key, len(chosen))):
    width = int(np.prod(layer.out_shape))
    adapters[layer.path] = {
      "down": jax.random.normal(layer_key, (width, config.size)) / np.sqrt(width),
      "down_bias": jnp.zeros((config.size,)),
      "up": jnp.zeros((config.size, width)),
      "up_bias": jnp.zeros((width,)),
    }
  return adapters


def apply(
  model: nn.Module,
  variables: PyTree,
  adapters: PyTree,
  *args,
  method: str | Callable | None = None,
  **kwargs,
) -> Any:
  """`model.apply(variables, *args, **kwargs)` with an adapter after each adapted layer."""

  def adapt(next_fun, call_args, call_kwargs, context):
    y = next_fun(*call_args, **call_kwargs)
    path = "/".join(context.module.path)
    if context.method_name != "__call__" or path not in adapters:
      return y
    adapter = adapters[path]
    flat = y.reshape(y.shape[: y.ndim - _output_axes(y, adapter)] + (-1,))
    hidden = nn.gelu(flat @ adapter["down"].astype(y.dtype) + adapter["down_bias"])
    update = hidden @ adapter["up"].astype(y.dtype) + adapter["up_bias"]
    return y + update.reshape(y.shape).astype(y.dtype)

  with nn.intercept_methods(adapt):
    return model.apply(variables, *args, method=method, **kwargs)


def _output_axes(y: jax.Array, adapter: PyTree) -> int:
  """How many trailing axes of `y` the adapter's width spans (e.g. 2 for [heads, head_dim])."""
  width, size = adapter["up_bias"].shape[0], 1
  for axes in range(1, y.ndim + 1):
    size *= y.shape[-axes]
    if size == width:
      return axes
  raise ValueError(f"An adapter of width {width} does not fit an output of shape {y.shape}.")

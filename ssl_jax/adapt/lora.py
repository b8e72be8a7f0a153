"""LoRA (Hu et al. 2021) for any Flax linen model, without touching the model's code.

The adapters are a pytree of their own, {module path: {"a": [in, r], "b": [r, out]}}, one
entry per adapted `nn.Dense` / `nn.DenseGeneral` (chosen by a regular expression on the module
path, e.g. "encoder/block_0/attention/query"), and of every adapted `nn.Conv` (LoRA for
convolutions as peft does it: the kernel [kh, kw, in, out] gets the update A B reshaped, A
being [kh * kw * in, r]). `apply` runs the model under `nn.intercept_methods`, so every
adapted layer returns

    W x + bias + (alpha / rank) * B(A(dropout(x)))       (Dense)
    conv(x, W) + bias + conv(dropout(x), (alpha / rank) * A B)   (Conv)

and everything else is untouched. With "b" initialised to zero the adapted model starts equal
to the base model. `merge` folds the update into the kernels for adapter-free inference
(`unmerge` takes it out again), and the adapters alone are what a LoRA run needs to save.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Adapters = dict[str, dict[str, jax.Array]]

_ADAPTABLE = (nn.Dense, nn.DenseGeneral, nn.Conv)


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  """rank r, scale alpha / r, dropout on the adapter's input, and which layers to adapt
  (`targets`: a regular expression searched in the "/"-joined module path; the default is
  the query and value projections, as in the paper and peft)."""

  rank: int = 8
  alpha: float = 16.0
  dropout: float = 0.0
  targets: str = r"attention/(query|value)$"

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


@dataclasses.dataclass(frozen=True)
class AdaptedLayer:
  """A layer LoRA can adapt: its kernel's input (contracted) and output shapes."""

  path: str
  in_shape: tuple[int, ...]
  out_shape: tuple[int, ...]


def _module_path(module: nn.Module) -> str:
  return "/".join(module.path)


def _contracted_dims(module: nn.Module, input_ndim: int) -> int:
  """How many trailing input axes the layer contracts (its kernel's leading axes)."""
  if isinstance(module, nn.Dense):
    return 1
  if isinstance(module, nn.Conv):
    return input_ndim - 1  # the window and the input channels
  axes = module.axis if isinstance(module.axis, tuple) else (module.axis,)
  if module.batch_dims:
    raise ValueError(f"LoRA cannot adapt DenseGeneral {_module_path(module)!r} with batch_dims.")
  if sorted(a % input_ndim for a in axes) != list(range(input_ndim - len(axes), input_ndim)):
    raise ValueError(
      f"LoRA adapts layers that contract trailing axes; "
      f"{_module_path(module)!r} contracts axis={module.axis}."
    )
  return len(axes)


def find_layers(model: nn.Module, variables: PyTree, *args, **kwargs) -> list[AdaptedLayer]:
  """Every Dense/DenseGeneral layer that `model.apply(variables, *args, **kwargs)` calls, with
  its shapes (found by tracing shapes only; nothing is computed)."""
  found: dict[str, AdaptedLayer] = {}

  def record(next_fun, call_args, call_kwargs, context):
    module = context.module
    if context.method_name == "__call__" and isinstance(module, _ADAPTABLE):
      out = next_fun(*call_args, **call_kwargs)
      kernel = module.variables["params"]["kernel"]
      n_in = (
        kernel.ndim - 1
        if isinstance(module, nn.Conv)
        else _contracted_dims(module, call_args[0].ndim)
      )
      found[_module_path(module)] = AdaptedLayer(
        _module_path(module), tuple(kernel.shape[:n_in]), tuple(kernel.shape[n_in:])
      )
      return out
    return next_fun(*call_args, **call_kwargs)

  def trace(variables):
    with nn.intercept_methods(record):
      return model.apply(variables, *args, **kwargs)

  jax.eval_shape(trace, variables)
  return list(found.values())


def init_adapters(key: jax.Array, layers: list[AdaptedLayer], config: LoraConfig) -> Adapters:
  """Adapters for the layers whose path matches `config.targets`: "a" ~ N(0, 1/in) (the
  scale of a fan-in init), "b" = 0 (so the adapted model starts as the base model)."""
  chosen = [layer for layer in layers if re.search(config.targets, layer.path)]
  if not chosen:
    raise ValueError(
      f"LoRA targets {config.targets!r} match no layer; the layers are: "
      f"{[layer.path for layer in layers]}."
    )
  adapters = {}
  for layer, layer_key in zip(chosen, jax.random.split(key, len(chosen))):
    fan_in, fan_out = int(np.prod(layer.in_shape)), int(np.prod(layer.out_shape))
    adapters[layer.path] = {
      "a": jax.random.normal(layer_key, (fan_in, config.rank)) / np.sqrt(fan_in),
      "b": jnp.zeros((config.rank, fan_out)),
    }
  return adapters


def apply(
  model: nn.Module,
  variables: PyTree,
  adapters: Adapters,
  config: LoraConfig,
  *args,
  dropout_key: jax.Array | None = None,
  method: str | Callable | None = None,
  **kwargs,
) -> Any:
  """`model.apply(variables, *args, **kwargs)` with the adapters added to their layers.

  `dropout_key` turns on LoRA dropout (training); each layer folds its path into it.
  """

  def adapt(next_fun, call_args, call_kwargs, context):
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, _ADAPTABLE):
      return next_fun(*call_args, **call_kwargs)
    path = _module_path(module)
    if path not in adapters:
      return next_fun(*call_args, **call_kwargs)
    y = next_fun(*call_args, **call_kwargs)
    x = call_args[0]
    if dropout_key is not None and config.dropout > 0:
      keep = jax.random.bernoulli(
        jax.random.fold_in(dropout_key, zlib.crc32(path.encode())), 1.0 - config.dropout, x.shape
      )
      x = jnp.where(keep, x / (1.0 - config.dropout), 0.0)
    a, b = adapters[path]["a"], adapters[path]["b"]
    if isinstance(module, nn.Conv):
      # A convolution is linear in its kernel: the update is the same convolution (strides,
      # padding, groups) with the low-rank kernel, without bias.
      kernel = module.variables["params"]["kernel"]
      delta_conv = module.clone(parent=None, use_bias=False)
      delta = delta_conv.apply(
        {"params": {"kernel": _kernel_delta(adapters[path], kernel, config.scale)}}, x
      )
      return y + delta.astype(y.dtype)
    n_in = _contracted_dims(module, x.ndim)
    x = x.reshape(x.shape[: x.ndim - n_in] + (-1,))
    delta = (x @ a.astype(x.dtype)) @ b.astype(x.dtype) * config.scale
    return y + delta.reshape(y.shape).astype(y.dtype)

  with nn.intercept_methods(adapt):
    return model.apply(variables, *args, method=method, **kwargs)


def _kernel_delta(adapter: dict[str, jax.Array], kernel: jax.Array, scale: float) -> jax.Array:
  return (scale * adapter["a"] @ adapter["b"]).reshape(kernel.shape).astype(kernel.dtype)


def _map_kernels(params: PyTree, adapters: Adapters, fn) -> PyTree:
  params = jax.tree.map(lambda x: x, params)  # a copy whose dicts can be edited
  for path, adapter in adapters.items():
    node = params
    for name in path.split("/"):
      if name not in node:
        raise KeyError(f"Adapter {path!r} has no layer in these params (missing {name!r}).")
      node = node[name]
    node["kernel"] = fn(node["kernel"], adapter)
  return params


def merge(params: PyTree, adapters: Adapters, config: LoraConfig) -> PyTree:
  """The base params with W + (alpha / r) A B in every adapted kernel: the same function as
  `apply` (without dropout), at the base model's cost."""
  return _map_kernels(
    params, adapters, lambda kernel, adapter: kernel + _kernel_delta(adapter, kernel, config.scale)
  )


def unmerge(params: PyTree, adapters: Adapters, config: LoraConfig) -> PyTree:
  """Inverse of `merge` (up to float rounding)."""
  return _map_kernels(
    params, adapters, lambda kernel, adapter: kernel - _kernel_delta(adapter, kernel, config.scale)
  )


def count_parameters(tree: PyTree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))

"""ResNet encoders (v1.5) with CIFAR-style or ImageNet-style stems and configurable width."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ssl_jax.errors import ConfigError
from ssl_jax.models.transformer import _dtype
from ssl_jax.registry import MODELS

PADDINGS = ("same", "torch")


def _shortcut(x: jnp.ndarray, y: jnp.ndarray, strides: int, norm, conv) -> jnp.ndarray:
  """Identity, or a strided 1x1 projection + norm where the block changes the shape."""
  if x.shape == y.shape:
    return x
  return norm()(conv(y.shape[-1], (1, 1), (strides, strides), padding="VALID")(x))


def _layers(train: bool, dtype: str, padding: str = "same"):
  """(norm, conv) constructors: convolutions in the compute dtype, norms in float32 params.
  padding "same" is XLA's SAME (a stride-2 3x3 pads (0, 1) on even sizes); "torch" pads k // 2
  on every side, as torchvision and timm do, so their weights compute the same function."""
  norm = functools.partial(
    nn.BatchNorm, use_running_average=not train, momentum=0.9, dtype=_dtype(dtype)
  )

  def conv(features, kernel_size, strides=(1, 1), padding=None, **kwargs):
    if padding is None:
      padding = "SAME" if padding_mode == "same" else [(k // 2, k // 2) for k in kernel_size]
    return nn.Conv(
      features, kernel_size, strides, padding=padding, use_bias=False, dtype=_dtype(dtype), **kwargs
    )

  padding_mode = padding
  return norm, conv


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with an identity (or projected) shortcut."""

  features: int
  strides: int = 1
  dtype: str = "float32"
  padding: str = "same"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    norm, conv = _layers(train, self.dtype, self.padding)
    y = conv(self.features, (3, 3), (self.strides, self.strides))(x)
    y = nn.relu(norm()(y))
    y = conv(self.features, (3, 3))(y)
    # Zero-init the last norm scale so each block starts as the identity (Goyal et al., 2017).
    y = norm(scale_init=nn.initializers.zeros)(y)
    return nn.relu(y + _shortcut(x, y, self.strides, norm, conv))


class BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand by 4."""

  features: int
  strides: int = 1
  dtype: str = "float32"
  padding: str = "same"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    norm, conv = _layers(train, self.dtype, self.padding)
    y = nn.relu(norm()(conv(self.features, (1, 1))(x)))
    y = conv(self.features, (3, 3), (self.strides, self.strides))(y)
    y = nn.relu(norm()(y))
    y = conv(self.features * 4, (1, 1))(y)
    y = norm(scale_init=nn.initializers.zeros)(y)
    return nn.relu(y + _shortcut(x, y, self.strides, norm, conv))


@MODELS.register("resnet")
class ResNet(nn.Module):
  """ResNet trunk returning globally pooled features of size `width * 2**(len(stages)-1)`.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    width: channels of the first stage; each later stage doubles it.
    block: "basic" (ResNet-18/34) or "bottleneck" (ResNet-50+).
    stem: "cifar" (3x3 conv, no pooling: small images) or "imagenet" (7x7/2 conv + 3x3/2 pool).
    dtype: compute dtype ("float32" or "bfloat16"); params and returned features are float32.
    padding: "same" (XLA's SAME) or "torch" (k // 2 on every side, the stem's max pool too:
      torchvision's and timm's layout, which their weights need; see `_layers`).
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width: int = 64
  block: str = "basic"
  stem: str = "cifar"
  dtype: str = "float32"
  padding: str = "same"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    blocks = {"basic": BasicBlock, "bottleneck": BottleneckBlock}
    if self.block not in blocks:
      raise ConfigError(f"Unknown ResNet block {self.block!r}; valid: {sorted(blocks)}.")
    if self.stem not in ("cifar", "imagenet"):
      raise ConfigError(f"Unknown ResNet stem {self.stem!r}; valid: ['cifar', 'imagenet'].")
    if self.padding not in PADDINGS:
      raise ConfigError(f"Unknown ResNet padding {self.padding!r}; valid: {list(PADDINGS)}.")
    block_cls = blocks[self.block]
    norm, conv = _layers(train, self.dtype, self.padding)
    if self.stem == "imagenet":
      x = conv(self.width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)])(x)
    else:
      x = conv(self.width, (3, 3))(x)
    x = nn.relu(norm()(x))
    if self.stem == "imagenet":
      pool_padding = "SAME" if self.padding == "same" else ((1, 1), (1, 1))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=pool_padding)
    for stage, num_blocks in enumerate(self.stage_sizes):
      for index in range(num_blocks):
        strides = 2 if stage > 0 and index == 0 else 1
        x = block_cls(self.width * 2**stage, strides, self.dtype, self.padding)(x, train=train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


@MODELS.register("resnet18")
def resnet18(
  width: int = 64, stem: str = "cifar", dtype: str = "float32", padding: str = "same"
) -> ResNet:
  return ResNet((2, 2, 2, 2), width, "basic", stem, dtype, padding)


@MODELS.register("resnet50")
def resnet50(
  width: int = 64, stem: str = "imagenet", dtype: str = "float32", padding: str = "same"
) -> ResNet:
  return ResNet((3, 4, 6, 3), width, "bottleneck", stem, dtype, padding)

"""Vision Transformer (Dosovitskiy et al., 2021) with the hooks MAE and multi-crop need."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.errors import ConfigError
from ssl_jax.models.transformer import EncoderBlock, _dtype
from ssl_jax.registry import MODELS


def patchify(images: jnp.ndarray, patch_size: int) -> jnp.ndarray:
  """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C], patches in row-major order."""
  b, h, w, c = images.shape
  if h % patch_size or w % patch_size:
    raise ConfigError(f"image size {(h, w)} is not divisible by patch_size {patch_size}.")
  x = images.reshape(b, h // patch_size, patch_size, w // patch_size, patch_size, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch_size) * (w // patch_size), -1)


def sincos_position_embedding(grid: int, width: int) -> jnp.ndarray:
  """Fixed 2-D sine-cosine embedding [grid*grid, width] (MAE, MoCo v3)."""
  if width % 4:
    raise ConfigError(f"width {width} must be divisible by 4 for 2-D sin-cos embeddings.")
  omega = 1.0 / 10000 ** (jnp.arange(width // 4, dtype=jnp.float32) / (width // 4))
  ys, xs = jnp.meshgrid(
    jnp.arange(grid, dtype=jnp.float32), jnp.arange(grid, dtype=jnp.float32), indexing="ij"
  )
  out_y = ys.reshape(-1, 1) * omega[None]
  out_x = xs.reshape(-1, 1) * omega[None]
  return jnp.concatenate([jnp.sin(out_x), jnp.cos(out_x), jnp.sin(out_y), jnp.cos(out_y)], -1)


@MODELS.register("vit")
class ViT(nn.Module):
  """ViT encoder returning pooled features [B, width].

  Attributes:
    patch_size: side of the square patches.
    width, depth, num_heads, mlp_dim: the Transformer's size.
    image_size: the size the position embeddings are made for; other sizes (multi-crop's local
      views) get them resized bilinearly.
    pool: "cls" (class token) or "mean" (mean of the patch tokens).
    position_embedding: "learned" or "sincos" (fixed).
    dtype: compute dtype of the Transformer ("float32" or "bfloat16"); params stay float32.
    gelu_approximate: the MLP's GELU as tanh (True) or exact (timm's and the paper's).

  `__call__(images, train, keep=None, return_tokens=False)`: `keep` [B, K] selects the patch
  tokens that enter the encoder (MAE's visible patches); `return_tokens` returns all output
  tokens [B, 1+K, width] (the class token first) instead of the pooled features.
  """

  patch_size: int = 16
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  image_size: int = 224
  pool: str = "cls"
  position_embedding: str = "learned"
  dtype: str = "float32"
  gelu_approximate: bool = True

  @nn.compact
  def __call__(
    self,
    images: jnp.ndarray,
    train: bool = True,
    keep: jnp.ndarray | None = None,
    return_tokens: bool = False,
  ) -> jnp.ndarray:
    if self.pool not in ("cls", "mean"):
      raise ConfigError(f"Unknown ViT pool {self.pool!r}; valid: ['cls', 'mean'].")
    if self.position_embedding not in ("learned", "sincos"):
      raise ConfigError(
        f"Unknown position_embedding {self.position_embedding!r}; valid: ['learned', 'sincos']."
      )
    x = nn.Dense(self.width, dtype=_dtype(self.dtype), name="patch_embed")(
      patchify(images, self.patch_size)
    )
    x = x + self._positions(images.shape[1] // self.patch_size, images.shape[2] // self.patch_size)
    if keep is not None:
      x = jnp.take_along_axis(x, keep[..., None], axis=1)
    cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, self.width))
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.width)).astype(x.dtype), x], 1)
    for i in range(self.depth):
      x = EncoderBlock(
        self.num_heads,
        self.mlp_dim,
        0.0,
        self.dtype,
        gelu_approximate=self.gelu_approximate,
        name=f"block_{i}",
      )(x, None, train)
    x = nn.LayerNorm(name="final_norm")(x).astype(jnp.float32)
    if return_tokens:
      return x
    return x[:, 0] if self.pool == "cls" else x[:, 1:].mean(axis=1)

  def _positions(self, grid_h: int, grid_w: int) -> jnp.ndarray:
    grid = self.image_size // self.patch_size
    if self.position_embedding == "sincos":
      table = sincos_position_embedding(grid, self.width)
    else:
      table = self.param("position_embed", nn.initializers.normal(0.02), (grid * grid, self.width))
    if (grid_h, grid_w) != (grid, grid):
      table = jax.image.resize(
        table.reshape(grid, grid, self.width), (grid_h, grid_w, self.width), "bilinear"
      ).reshape(-1, self.width)
    return table[None]


_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}


def _preset(size: str):
  width, depth, heads = _SIZES[size]

  def build(
    patch_size: int = 16,
    image_size: int = 224,
    pool: str = "cls",
    position_embedding: str = "learned",
    dtype: str = "float32",
    gelu_approximate: bool = True,
  ) -> ViT:
    return ViT(
      patch_size=patch_size,
      width=width,
      depth=depth,
      num_heads=heads,
      mlp_dim=4 * width,
      image_size=image_size,
      pool=pool,
      position_embedding=position_embedding,
      dtype=dtype,
      gelu_approximate=gelu_approximate,
    )

  build.__doc__ = f"ViT-{size[0].upper()}: width {width}, depth {depth}, {heads} heads."
  return build


for _name, _size in (("vit_ti", "tiny"), ("vit_s", "small"), ("vit_b", "base")):
  MODELS.register(_name)(_preset(_size))

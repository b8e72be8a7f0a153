"""A Llama-family decoder (Llama 2/3, SmolLM, Qwen2's layout): rotary positions with the
config's theta and scaling, RMSNorm, a SwiGLU MLP, grouped-query attention (optionally with
query/key/value biases, as Qwen2 has), tied or untied output embeddings, and its own key/value
cache for sampling.

It has the text-model interface the trainer's tasks use (`TransformerDecoder`'s): called as
`(tokens, valid, train, segment_ids=None, positions=None, decode=False)` it returns the final
normalised hidden states; `attend(h)` gives the logits; `dims` names its sizes. Packed rows
restart rotary positions at every document. Module names follow ssl_jax's (`block_<i>/
attention/{query,key,value,out}`, `mlp_gate`/`mlp_in`/`mlp_out`), so LoRA, freezing and
layer-wise decay find them. `dtype="bfloat16"` computes in bfloat16 with float32 parameters;
norms, rotary angles and the softmax stay float32.
"""

from __future__ import annotations

import math
from typing import Annotated

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.errors import ConfigError
from ssl_jax.models.transformer import ATTENTION_IMPLEMENTATIONS, segment_mask
from ssl_jax.registry import MODELS
from ssl_jax.value_checks import OneOf, Range

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
ROPE_SCALINGS = ("", "linear", "llama3")


def rope_frequencies(
  head_dim: int,
  theta: float,
  scaling: str = "",
  factor: float = 1.0,
  low_freq_factor: float = 1.0,
  high_freq_factor: float = 4.0,
  original_max_length: int = 8192,
) -> np.ndarray:
  """[head_dim / 2] inverse frequencies, with transformers' "linear" or "llama3" scaling."""
  inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  if scaling == "linear":
    return (inv_freq / factor).astype(np.float32)
  if scaling == "llama3":
    low_wavelen = original_max_length / low_freq_factor
    high_wavelen = original_max_length / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (original_max_length / wavelen - low_freq_factor) / (
      high_freq_factor - low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)
  return inv_freq.astype(np.float32)


def apply_rope(x: jnp.ndarray, positions: jnp.ndarray, inv_freq: np.ndarray) -> jnp.ndarray:
  """Rotates [B, L, heads, head_dim] by each position's angles (the half-split convention of
  transformers' `rotate_half`), in float32."""
  angles = positions[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)  # [B, L, hd/2]
  cos = jnp.cos(jnp.concatenate([angles, angles], -1))[:, :, None]
  sin = jnp.sin(jnp.concatenate([angles, angles], -1))[:, :, None]
  x32 = x.astype(jnp.float32)
  first, second = jnp.split(x32, 2, axis=-1)
  rotated = jnp.concatenate([-second, first], -1)
  return (x32 * cos + rotated * sin).astype(x.dtype)


class LlamaAttention(nn.Module):
  """Grouped-query attention with rotary positions and a key/value cache (`decode=True`: one
  token per call after an init with a [batch, max_length] input, as `Attention`'s)."""

  num_heads: int
  num_kv_heads: int
  head_dim: int
  inv_freq: tuple[float, ...]
  bias: bool = False
  dtype: str = "float32"
  implementation: str = "xla"

  @nn.compact
  def __call__(self, x, mask, positions, decode: bool = False):
    dtype = _DTYPES[self.dtype]
    dense = lambda heads, name, bias: nn.DenseGeneral(
      (heads, self.head_dim), use_bias=bias, dtype=dtype, name=name
    )
    inv_freq = np.asarray(self.inv_freq, np.float32)
    q = apply_rope(dense(self.num_heads, "query", self.bias)(x), positions, inv_freq)
    k = apply_rope(dense(self.num_kv_heads, "key", self.bias)(x), positions, inv_freq)
    v = dense(self.num_kv_heads, "value", self.bias)(x)
    if decode:
      k, v, mask = self._update_cache(k, v, mask)
    y = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=self.implementation)
    return nn.DenseGeneral(x.shape[-1], axis=(-2, -1), use_bias=False, dtype=dtype, name="out")(y)

  def _update_cache(self, k, v, mask):
    initialised = self.has_variable("cache", "cached_key")
    cached_k = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
    cached_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
    if not initialised:  # model.init: only create the cache
      return k, v, mask
    if k.shape[1] != 1:
      raise ValueError(f"Decoding takes one token per call; got {k.shape[1]}.")
    i = index.value
    cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, (0, i, 0, 0))
    cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, (0, i, 0, 0))
    index.value = i + 1
    mask = (jnp.arange(cached_k.value.shape[1]) <= i)[None, None, None, :]
    return cached_k.value, cached_v.value, mask


class LlamaBlock(nn.Module):
  """x + attention(RMSNorm(x)), then x + down(silu(gate(h)) * up(h)) with h = RMSNorm(x)."""

  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  inv_freq: tuple[float, ...]
  norm_epsilon: float
  attention_bias: bool = False
  dropout_rate: float = 0.0
  dtype: str = "float32"
  attention_impl: str = "xla"

  @nn.compact
  def __call__(self, x, mask, positions, train: bool, decode: bool = False):
    dtype = _DTYPES[self.dtype]
    norm = lambda name: nn.RMSNorm(epsilon=self.norm_epsilon, dtype=dtype, name=name)
    drop = lambda y: nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    attention = LlamaAttention(
      self.num_heads,
      self.num_kv_heads,
      self.head_dim,
      self.inv_freq,
      self.attention_bias,
      self.dtype,
      self.attention_impl,
      name="attention",
    )
    x = x + drop(attention(norm("attention_norm")(x), mask, positions, decode))
    h = norm("mlp_norm")(x)
    dense = lambda width, name: nn.Dense(width, use_bias=False, dtype=dtype, name=name)
    up = nn.silu(dense(self.mlp_dim, "mlp_gate")(h)) * dense(self.mlp_dim, "mlp_in")(h)
    return x + drop(dense(x.shape[-1], "mlp_out")(up))


@MODELS.register("llama_decoder", derived=("vocab_size", "max_length"))
class LlamaDecoder(nn.Module):
  """The decoder (see the module docstring). `num_kv_heads` 0 = `num_heads` (multi-head);
  `head_dim` 0 = width / num_heads; `rope_scaling` "" | "linear" | "llama3" with its factors."""

  vocab_size: int
  width: int = 256
  depth: int = 4
  num_heads: int = 4
  num_kv_heads: Annotated[int, Range(0)] = 0
  head_dim: Annotated[int, Range(0)] = 0
  mlp_dim: int = 688
  max_length: int = 2048
  rope_theta: Annotated[float, Range(0, low_open=True)] = 10000.0
  rope_scaling: Annotated[str, OneOf(ROPE_SCALINGS)] = ""
  rope_factor: Annotated[float, Range(0, low_open=True)] = 1.0
  rope_low_freq_factor: Annotated[float, Range(0, low_open=True)] = 1.0
  rope_high_freq_factor: Annotated[float, Range(0, low_open=True)] = 4.0
  rope_original_max_length: int = 8192
  norm_epsilon: float = 1e-6
  tie_embeddings: bool = False
  attention_bias: bool = False
  dropout_rate: float = 0.0
  dtype: str = "float32"
  remat: bool = False
  attention_impl: str = "xla"
  causal: bool = True

  @property
  def dims(self) -> dict[str, int]:
    return dict(width=self.width, depth=self.depth, num_heads=self.num_heads, mlp_dim=self.mlp_dim)

  @property
  def embedding_width(self) -> int:
    return self.width

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def head_size(self) -> int:
    return self.head_dim or self.width // self.num_heads

  def setup(self):
    self._check()
    dtype = _DTYPES[self.dtype]
    self.token_embed = nn.Embed(
      self.vocab_size, self.width, dtype=dtype, embedding_init=nn.initializers.normal(0.02)
    )
    inv_freq = rope_frequencies(
      self.head_size,
      self.rope_theta,
      self.rope_scaling,
      self.rope_factor,
      self.rope_low_freq_factor,
      self.rope_high_freq_factor,
      self.rope_original_max_length,
    )
    block = nn.remat(LlamaBlock, static_argnums=(4, 5)) if self.remat else LlamaBlock
    self.blocks = [
      block(
        self.num_heads,
        self.kv_heads,
        self.head_size,
        self.mlp_dim,
        tuple(float(f) for f in inv_freq),
        self.norm_epsilon,
        self.attention_bias,
        self.dropout_rate,
        self.dtype,
        self.attention_impl,
        name=f"block_{i}",
      )
      for i in range(self.depth)
    ]
    self.final_norm = nn.RMSNorm(epsilon=self.norm_epsilon, dtype=dtype)
    if not self.tie_embeddings:
      self.lm_head = nn.Dense(self.vocab_size, use_bias=False, dtype=dtype)

  def _check(self) -> None:
    if self.num_heads % self.kv_heads:
      raise ConfigError(
        f"llama_decoder: num_heads={self.num_heads} is not a multiple of "
        f"num_kv_heads={self.kv_heads}."
      )
    if self.head_size % 2 or (not self.head_dim and self.width % self.num_heads):
      raise ConfigError(
        f"llama_decoder: head_dim {self.head_size} must be even and width {self.width} a "
        f"multiple of num_heads {self.num_heads} (or set head_dim)."
      )
    if self.rope_scaling not in ROPE_SCALINGS:
      raise ConfigError(
        f"Unknown rope_scaling {self.rope_scaling!r}; valid: {list(ROPE_SCALINGS)}."
      )
    if self.dtype not in _DTYPES or self.attention_impl not in ATTENTION_IMPLEMENTATIONS:
      raise ConfigError(
        f"llama_decoder: dtype {self.dtype!r} (valid: {list(_DTYPES)}), attention_impl "
        f"{self.attention_impl!r} (valid: {list(ATTENTION_IMPLEMENTATIONS)})."
      )

  def __call__(
    self,
    tokens: jnp.ndarray,
    valid: jnp.ndarray,
    train: bool = True,
    segment_ids: jnp.ndarray | None = None,
    positions: jnp.ndarray | None = None,
    decode: bool = False,
  ) -> jnp.ndarray:
    length = tokens.shape[1]
    if length > self.max_length:
      raise ConfigError(f"sequence length {length} exceeds max_length {self.max_length}.")
    segment_ids = (
      valid.astype(jnp.int32) if segment_ids is None else jnp.where(valid, segment_ids, 0)
    )
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(length), tokens.shape)
    mask = None if decode else segment_mask(segment_ids, causal=True)
    x = self.token_embed(tokens)
    for block in self.blocks:
      x = block(x, mask, positions, train, decode)
    x = self.final_norm(x)
    if self.is_initializing() and not self.tie_embeddings:
      self.lm_head(x[:, :1])  # `attend` is not called by init: create the output layer here
    return x

  def attend(self, hidden: jnp.ndarray) -> jnp.ndarray:
    if self.tie_embeddings:
      return self.token_embed.attend(hidden)
    return self.lm_head(hidden)

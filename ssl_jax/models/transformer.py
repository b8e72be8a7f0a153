"""Pre-LayerNorm Transformer encoder (BERT-style trunk) built on `jax.nn.dot_product_attention`."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.registry import MODELS

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _dtype(name: str):
  if name not in _DTYPES:
    raise ValueError(f"Unknown dtype {name!r}; valid: {sorted(_DTYPES)}.")
  return _DTYPES[name]


class SelfAttention(nn.Module):
  """Multi-head self-attention; `mask` is [batch, 1, q, k] booleans (True = may attend)."""

  num_heads: int
  dropout_rate: float = 0.0
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray, train: bool) -> jnp.ndarray:
    width = x.shape[-1]
    if width % self.num_heads:
      raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}.")
    head_dim = width // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, head_dim), dtype=_dtype(self.dtype),
                                         name=name)
    q, k, v = dense("query")(x), dense("key")(x), dense("value")(x)
    # dot_product_attention picks the fused cuDNN/TPU kernel where the platform has one.
    y = jax.nn.dot_product_attention(q, k, v, mask=mask)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return nn.DenseGeneral(width, axis=(-2, -1), dtype=_dtype(self.dtype), name="out")(y)


class EncoderBlock(nn.Module):
  """x + Attn(LN(x)); x + MLP(LN(x))."""

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray, train: bool) -> jnp.ndarray:
    y = SelfAttention(self.num_heads, self.dropout_rate, self.dtype)(nn.LayerNorm()(x), mask, train)
    x = x + nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = nn.Dense(self.mlp_dim, dtype=_dtype(self.dtype))(nn.LayerNorm()(x))
    y = nn.Dense(x.shape[-1], dtype=_dtype(self.dtype))(nn.gelu(y))
    return x + nn.Dropout(self.dropout_rate)(y, deterministic=not train)


@MODELS.register("transformer_encoder")
class TransformerEncoder(nn.Module):
  """Token + learned position embeddings, `depth` pre-LN blocks, a final LayerNorm.

  `__call__(tokens, valid, train)` returns hidden states [batch, length, width]; `valid` marks
  real tokens so padding is never attended to. `attend(h)` projects hidden states onto the token
  embedding matrix (tied output embeddings).
  """

  vocab_size: int
  width: int = 256
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 1024
  max_length: int = 512
  dropout_rate: float = 0.1
  dtype: str = "float32"

  def setup(self):
    self.token_embed = nn.Embed(self.vocab_size, self.width,
                                embedding_init=nn.initializers.normal(0.02))
    self.position_embed = self.param("position_embed", nn.initializers.normal(0.02),
                                     (self.max_length, self.width))
    self.blocks = [
        EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate, self.dtype,
                     name=f"block_{i}")
        for i in range(self.depth)
    ]
    self.final_norm = nn.LayerNorm()
    self.embed_dropout = nn.Dropout(self.dropout_rate)

  def __call__(self, tokens: jnp.ndarray, valid: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    length = tokens.shape[1]
    if length > self.max_length:
      raise ValueError(f"sequence length {length} exceeds max_length {self.max_length}.")
    x = self.token_embed(tokens) + self.position_embed[None, :length]
    x = self.embed_dropout(x, deterministic=not train)
    mask = (valid[:, None, :, None] & valid[:, None, None, :])
    # Padding queries see nothing otherwise; let them see themselves so softmax stays finite.
    mask = mask | jnp.eye(length, dtype=bool)[None, None]
    for block in self.blocks:
      x = block(x, mask, train)
    return self.final_norm(x)

  def attend(self, hidden: jnp.ndarray) -> jnp.ndarray:
    return self.token_embed.attend(hidden)

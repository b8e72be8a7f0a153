"""Pre-LayerNorm Transformer encoder (BERT-style trunk) built on `jax.nn.dot_product_attention`."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.registry import MODELS

PAD_SEGMENT = 0  # segment id of padding on packed rows (ssl_jax.data.packing writes it)
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _dtype(name: str):
  if name not in _DTYPES:
    raise ValueError(f"Unknown dtype {name!r}; valid: {sorted(_DTYPES)}.")
  return _DTYPES[name]


def segment_mask(segment_ids: jnp.ndarray, causal: bool = False) -> jnp.ndarray:
  """[B, 1, L, L] booleans: query i may attend key j iff both are in the same non-padding
  segment (and j <= i when `causal`). Padding queries attend to themselves only, so every
  softmax row has an entry."""
  same = segment_ids[:, :, None] == segment_ids[:, None, :]
  mask = same & (segment_ids[:, None, :] != PAD_SEGMENT)
  if causal:
    length = segment_ids.shape[1]
    mask = mask & jnp.tril(jnp.ones((length, length), bool))[None]
  mask = mask | jnp.eye(segment_ids.shape[1], dtype=bool)[None]
  return mask[:, None]


class SelfAttention(nn.Module):
  """Multi-head self-attention; `mask` is [batch, 1, q, k] booleans (True = may attend).

  With `decode=True` it keeps a key/value cache in the "cache" collection: initialising with
  a [batch, max_length] input sizes the cache, and each later call takes one new token per row,
  writes its key and value at the cache index and attends to every cached position so far
  (`mask` is ignored; the cache index is the causal mask).
  """

  num_heads: int
  dropout_rate: float = 0.0
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray | None, train: bool,
               decode: bool = False) -> jnp.ndarray:
    width = x.shape[-1]
    if width % self.num_heads:
      raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}.")
    head_dim = width // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, head_dim), dtype=_dtype(self.dtype),
                                         name=name)
    q, k, v = dense("query")(x), dense("key")(x), dense("value")(x)
    if decode:
      k, v, mask = self._update_cache(k, v, mask)
    # dot_product_attention picks the fused cuDNN/TPU kernel where the platform has one.
    y = jax.nn.dot_product_attention(q, k, v, mask=mask)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return nn.DenseGeneral(width, axis=(-2, -1), dtype=_dtype(self.dtype), name="out")(y)

  def _update_cache(self, k, v, mask):
    initialised = self.has_variable("cache", "cached_key")
    cached_k = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
    cached_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
    if not initialised:  # model.init: only create the cache, attend as given.
      return k, v, mask
    if k.shape[1] != 1:
      raise ValueError(f"Decoding takes one token per call; got {k.shape[1]}.")
    i = index.value
    cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, (0, i, 0, 0))
    cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, (0, i, 0, 0))
    index.value = i + 1
    max_length = cached_k.value.shape[1]
    mask = (jnp.arange(max_length) <= i)[None, None, None, :]
    return cached_k.value, cached_v.value, mask


class EncoderBlock(nn.Module):
  """x + Attn(LN(x)); x + MLP(LN(x))."""

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray | None, train: bool,
               decode: bool = False) -> jnp.ndarray:
    y = SelfAttention(self.num_heads, self.dropout_rate, self.dtype)(nn.LayerNorm()(x), mask,
                                                                     train, decode)
    x = x + nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = nn.Dense(self.mlp_dim, dtype=_dtype(self.dtype))(nn.LayerNorm()(x))
    y = nn.Dense(x.shape[-1], dtype=_dtype(self.dtype))(nn.gelu(y))
    return x + nn.Dropout(self.dropout_rate)(y, deterministic=not train)


@MODELS.register("transformer_encoder")
class TransformerEncoder(nn.Module):
  """Token + learned position embeddings, `depth` pre-LN blocks, a final LayerNorm.

  `__call__(tokens, valid, train, segment_ids=None, positions=None)` returns hidden states
  [batch, length, width]. `valid` marks real tokens so padding is never attended to; on packed
  rows, `segment_ids` (0 = padding) keep attention inside each document and `positions`
  restart at every document (see `ssl_jax.data.packing`). `attend(h)` projects hidden states
  onto the token embedding matrix (tied output embeddings).
  """

  vocab_size: int
  width: int = 256
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 1024
  max_length: int = 512
  dropout_rate: float = 0.1
  dtype: str = "float32"
  causal: bool = False

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

  def __call__(self, tokens: jnp.ndarray, valid: jnp.ndarray, train: bool = True,
               segment_ids: jnp.ndarray | None = None,
               positions: jnp.ndarray | None = None, decode: bool = False) -> jnp.ndarray:
    length = tokens.shape[1]
    if length > self.max_length:
      raise ValueError(f"sequence length {length} exceeds max_length {self.max_length}.")
    if segment_ids is None:  # One document per row: every valid token is segment 1.
      segment_ids = valid.astype(jnp.int32)
    else:
      segment_ids = jnp.where(valid, segment_ids, PAD_SEGMENT)
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(length), tokens.shape)
    x = self.token_embed(tokens) + jnp.take(self.position_embed, positions, axis=0)
    x = self.embed_dropout(x, deterministic=not train)
    mask = segment_mask(segment_ids, causal=self.causal)
    for block in self.blocks:
      x = block(x, mask, train, decode)
    return self.final_norm(x)

  def attend(self, hidden: jnp.ndarray) -> jnp.ndarray:
    return self.token_embed.attend(hidden)


@MODELS.register("transformer_decoder")
class TransformerDecoder(TransformerEncoder):
  """GPT-style decoder: the same pre-LN trunk with causal attention (within each packed
  document), tied output embeddings, and a key/value cache for sampling (`decode=True`: init
  with a [batch, max_length] input, then feed one token per call with its `positions`)."""

  causal: bool = True

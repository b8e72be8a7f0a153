"""Transformer text models on `jax.nn.dot_product_attention`: encoder (BERT-style), decoder
(GPT-style, causal, with a key/value cache) and encoder-decoder (T5-style).

Sizes come from named presets (`size="tiny" | "mini" | "small" | "base"`), each of which a
config may override dimension by dimension. Blocks are pre-LayerNorm by default (GPT-2, ViT);
`post_norm=True` gives the original BERT layout (LayerNorm after each residual sum and after
the embeddings, no final norm), so Hugging Face BERT checkpoints convert exactly.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.errors import ConfigError
from ssl_jax.registry import MODELS

PAD_SEGMENT = 0  # segment id of padding on packed rows (ssl_jax.data.packing writes it)
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# width, depth, heads, MLP width. tiny is for tests; mini and small are BERT's compact models
# (Turc et al. 2019) and run on a CPU; base is BERT-base / GPT-2 small.
PRESETS = {
  "tiny": dict(width=64, depth=2, num_heads=2, mlp_dim=256),
  "mini": dict(width=256, depth=4, num_heads=4, mlp_dim=1024),
  "small": dict(width=512, depth=4, num_heads=8, mlp_dim=2048),
  "base": dict(width=768, depth=12, num_heads=12, mlp_dim=3072),
}


# What a text model's size comes from when the config does not set it: the tokenizer and the
# rows (`tasks.text.TextTask.build_text_model`); token types only sentence-pair rows have.
TEXT_DERIVED = ("vocab_size", "max_length", "num_token_types")


def _dtype(name: str):
  if name not in _DTYPES:
    raise ConfigError(f"Unknown dtype {name!r}; valid: {sorted(_DTYPES)}.")
  return _DTYPES[name]


def _check_attention_impl(implementation: str, dtype: str) -> None:
  if implementation not in ATTENTION_IMPLEMENTATIONS:
    raise ConfigError(
      f"Unknown attention_impl {implementation!r}; valid: {list(ATTENTION_IMPLEMENTATIONS)}."
    )
  if implementation == "cudnn" and dtype == "float32":
    raise ConfigError(
      'attention_impl="cudnn" needs dtype="bfloat16" (cuDNN flash attention '
      'has no float32 kernel); use attention_impl="xla" for float32.'
    )


def resolve_size(size: str, **overrides: int) -> dict[str, int]:
  """The preset's dimensions with every non-zero override applied."""
  if size not in PRESETS:
    raise ConfigError(f"Unknown transformer size {size!r}; valid: {list(PRESETS)}.")
  return {key: overrides.get(key) or value for key, value in PRESETS[size].items()}


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


ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn")


class Dropout(nn.Module):
  """Inverted dropout that draws 16 random bits per element where `nn.Dropout` draws 32.

  Every JAX random draw is a threefry hash, and on a CPU that hash is most of what dropout
  costs; one 32-bit draw here decides two elements (about 3% of a BERT-small MLM step,
  measured with benchmarks/mlm_vs_pytorch.py). Rates are exact to 1/65536.
  """

  rate: float

  @nn.compact
  def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
    if deterministic or self.rate == 0.0:
      return x
    if self.rate >= 1.0:
      return jnp.zeros_like(x)
    size = x.size
    words = jax.random.bits(self.make_rng("dropout"), ((size + 1) // 2,), jnp.uint32)
    halves = jnp.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(-1)[:size]
    keep = halves.reshape(x.shape) >= round(self.rate * 65536)
    return jnp.where(keep, x * jnp.asarray(1.0 / (1.0 - self.rate), x.dtype), 0).astype(x.dtype)


class Attention(nn.Module):
  """Multi-head attention; `mask` is [batch, 1, q, k] booleans (True = may attend). Keys and
  values come from `context` when given (cross-attention), else from `x`.

  With `decode=True` it keeps a key/value cache in the "cache" collection: initialising with
  a [batch, max_length] input sizes the cache, and each later call takes one new token per row,
  writes its key and value at the cache index and attends to every cached position so far
  (`mask` is ignored; the cache index is the causal mask).

  `implementation` goes to `jax.nn.dot_product_attention`: "xla" everywhere, or "cudnn" for
  the fused flash-attention kernel on NVIDIA GPUs (bfloat16/float16 compute only). JAX never
  picks cuDNN by itself, so GPU configs ask for it.
  """

  num_heads: int
  dropout_rate: float = 0.0
  dtype: str = "float32"
  implementation: str = "xla"

  @nn.compact
  def __call__(
    self,
    x: jnp.ndarray,
    mask: jnp.ndarray | None,
    train: bool,
    decode: bool = False,
    context: jnp.ndarray | None = None,
  ) -> jnp.ndarray:
    width = x.shape[-1]
    if width % self.num_heads:
      raise ConfigError(f"width {width} is not divisible by num_heads {self.num_heads}.")
    head_dim = width // self.num_heads
    dense = lambda name: nn.DenseGeneral(
      (self.num_heads, head_dim), dtype=_dtype(self.dtype), name=name
    )
    source = x if context is None else context
    q, k, v = dense("query")(x), dense("key")(source), dense("value")(source)
    if decode and context is None:
      k, v, mask = self._update_cache(k, v, mask)
    y = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=self.implementation)
    y = Dropout(self.dropout_rate)(y, deterministic=not train)
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
  """Self-attention, optional cross-attention, and a GELU MLP, each a residual sub-layer.

  Pre-norm (default): x + f(LN(x)). Post-norm (BERT): LN(x + f(x)).
  """

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: str = "float32"
  post_norm: bool = False
  norm_epsilon: float = 1e-6
  gelu_approximate: bool = True
  cross_attention: bool = False
  attention_impl: str = "xla"

  @nn.compact
  def __call__(
    self,
    x: jnp.ndarray,
    mask: jnp.ndarray | None,
    train: bool,
    decode: bool = False,
    context: jnp.ndarray | None = None,
    context_mask: jnp.ndarray | None = None,
  ) -> jnp.ndarray:
    def sublayer(x, name, fn):
      norm = nn.LayerNorm(epsilon=self.norm_epsilon, name=f"{name}_norm")
      drop = lambda y: Dropout(self.dropout_rate)(y, deterministic=not train)
      return norm(x + drop(fn(x))) if self.post_norm else x + drop(fn(norm(x)))

    attention = lambda name: Attention(
      self.num_heads, self.dropout_rate, self.dtype, self.attention_impl, name=name
    )
    x = sublayer(x, "attention", lambda h: attention("attention")(h, mask, train, decode))
    if self.cross_attention:
      x = sublayer(
        x,
        "cross_attention",
        lambda h: attention("cross_attention")(h, context_mask, train, context=context),
      )

    def mlp(h):
      h = nn.Dense(self.mlp_dim, dtype=_dtype(self.dtype), name="mlp_in")(h)
      h = nn.gelu(h, approximate=self.gelu_approximate)
      return nn.Dense(x.shape[-1], dtype=_dtype(self.dtype), name="mlp_out")(h)

    return sublayer(x, "mlp", mlp)


class TextEmbedding(nn.Module):
  """Token and learned position embeddings of width `width`; `attend` is the tied output
  projection. Shared between the stacks of an encoder-decoder, and between ELECTRA's
  generator and discriminator."""

  vocab_size: int
  width: int
  max_length: int
  dtype: str = "float32"
  with_positions: bool = True  # False: tokens only (each stack of a T5 has its own positions)

  def setup(self):
    self.token_embed = nn.Embed(
      self.vocab_size,
      self.width,
      dtype=_dtype(self.dtype),
      embedding_init=nn.initializers.normal(0.02),
    )
    if self.with_positions:
      self.position_embed = self.param(
        "position_embed", nn.initializers.normal(0.02), (self.max_length, self.width)
      )

  def __call__(self, tokens: jnp.ndarray, positions: jnp.ndarray | None) -> jnp.ndarray:
    x = self.token_embed(tokens)
    if positions is None:
      return x
    return x + jnp.take(self.position_embed, positions, axis=0).astype(_dtype(self.dtype))

  def attend(self, hidden: jnp.ndarray) -> jnp.ndarray:
    return self.token_embed.attend(hidden)


@MODELS.register("transformer_encoder", derived=TEXT_DERIVED)
class TransformerEncoder(nn.Module):
  """Embeddings, `depth` blocks, and (pre-norm) a final LayerNorm.

  `__call__(tokens, valid, train, segment_ids=None, positions=None)` returns hidden states
  [batch, length, width]. `valid` marks real tokens so padding is never attended to; on packed
  rows, `segment_ids` (0 = padding) keep attention inside each document and `positions`
  restart at every document (see `ssl_jax.data.packing`). `attend(h)` projects hidden states
  onto the token embedding matrix (tied output embeddings).

  Options beyond the size: `embed_width` (0 = width) gives embeddings of another width with a
  projection in and out (ELECTRA's generator); `shared_embed` reuses another module's
  `TextEmbedding` (with `own_positions`, only its token table); `remat`
  recomputes each block's activations in the backward pass instead of storing them;
  `dtype="bfloat16"` computes in bfloat16 with float32 parameters; `attention_impl="cudnn"`
  runs attention as cuDNN's fused kernel on an NVIDIA GPU (with bfloat16); `num_token_types`
  > 0 adds BERT's token-type (segment A / B) embedding table, indexed by the `token_types`
  argument (all type 0 when it is not given). Packed single-segment rows leave it at 0.
  """

  vocab_size: int
  size: str = "mini"
  width: int = 0
  depth: int = 0
  num_heads: int = 0
  mlp_dim: int = 0
  max_length: int = 512
  dropout_rate: float = 0.1
  dtype: str = "float32"
  causal: bool = False
  post_norm: bool = False
  norm_epsilon: float = 1e-6
  gelu_approximate: bool = True
  remat: bool = False
  embed_width: int = 0
  cross_attention: bool = False
  shared_embed: nn.Module | None = None
  own_positions: bool = False
  attention_impl: str = "xla"
  num_token_types: int = 0

  @property
  def dims(self) -> dict[str, int]:
    return resolve_size(
      self.size, width=self.width, depth=self.depth, num_heads=self.num_heads, mlp_dim=self.mlp_dim
    )

  @property
  def embedding_width(self) -> int:
    return self.embed_width or self.dims["width"]

  def setup(self):
    dims = self.dims
    _check_attention_impl(self.attention_impl, self.dtype)
    if self.shared_embed is not None:
      self.embed = self.shared_embed
    else:
      # With its own position table the embedding holds the token table only (a T5 stack).
      self.embed = TextEmbedding(
        self.vocab_size,
        self.embedding_width,
        self.max_length,
        self.dtype,
        with_positions=not self.own_positions,
      )
    if self.own_positions:
      self.position_embed = self.param(
        "position_embed", nn.initializers.normal(0.02), (self.max_length, self.embedding_width)
      )
    if self.num_token_types:
      self.type_embed = self.param(
        "type_embed", nn.initializers.normal(0.02), (self.num_token_types, self.embedding_width)
      )
    if self.embedding_width != dims["width"]:
      self.embed_project = nn.Dense(dims["width"], dtype=_dtype(self.dtype))
      self.output_project = nn.Dense(self.embedding_width, dtype=_dtype(self.dtype))
    # train (3) and decode (4) are Python booleans: static under rematerialization.
    block = nn.remat(EncoderBlock, static_argnums=(3, 4)) if self.remat else EncoderBlock
    self.blocks = [
      block(
        dims["num_heads"],
        dims["mlp_dim"],
        self.dropout_rate,
        self.dtype,
        self.post_norm,
        self.norm_epsilon,
        self.gelu_approximate,
        self.cross_attention,
        self.attention_impl,
        name=f"block_{i}",
      )
      for i in range(dims["depth"])
    ]
    # Post-norm normalises the embeddings instead of the output (BERT).
    self.final_norm = nn.LayerNorm(epsilon=self.norm_epsilon)
    self.embed_dropout = Dropout(self.dropout_rate)

  def __call__(
    self,
    tokens: jnp.ndarray,
    valid: jnp.ndarray,
    train: bool = True,
    segment_ids: jnp.ndarray | None = None,
    positions: jnp.ndarray | None = None,
    decode: bool = False,
    context: jnp.ndarray | None = None,
    context_valid: jnp.ndarray | None = None,
    token_types: jnp.ndarray | None = None,
  ) -> jnp.ndarray:
    length = tokens.shape[1]
    if length > self.max_length:
      raise ConfigError(f"sequence length {length} exceeds max_length {self.max_length}.")
    if segment_ids is None:  # One document per row: every valid token is segment 1.
      segment_ids = valid.astype(jnp.int32)
    else:
      segment_ids = jnp.where(valid, segment_ids, PAD_SEGMENT)
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(length), tokens.shape)
    if self.own_positions:
      x = self.embed(tokens, None) + jnp.take(self.position_embed, positions, axis=0).astype(
        _dtype(self.dtype)
      )
    else:
      x = self.embed(tokens, positions)
    if self.num_token_types:
      # Type 0 when the rows carry no types (HF BERT's default token_type_ids).
      types = jnp.zeros_like(tokens) if token_types is None else token_types
      x = x + jnp.take(self.type_embed, types, axis=0).astype(x.dtype)
    elif token_types is not None:
      raise ConfigError("Rows with token_types need config.model_kwargs.num_token_types >= 2.")
    if self.post_norm:
      x = self.final_norm(x)
    x = self.embed_dropout(x, deterministic=not train)
    if self.embedding_width != self.dims["width"]:
      x = self.embed_project(x)
    mask = segment_mask(segment_ids, causal=self.causal)
    context_mask = None if context_valid is None else context_valid[:, None, None, :]
    for block in self.blocks:
      x = block(x, mask, train, decode, context, context_mask)
    return x if self.post_norm else self.final_norm(x)

  def attend(self, hidden: jnp.ndarray) -> jnp.ndarray:
    # A head that already ends at the embedding width (the MLM head) needs no projection.
    if hidden.shape[-1] != self.embedding_width:
      hidden = self.output_project(hidden)
    return self.embed.attend(hidden)


@MODELS.register("transformer_decoder", derived=TEXT_DERIVED)
class TransformerDecoder(TransformerEncoder):
  """GPT-style decoder: the same trunk with causal attention (within each packed document),
  tied output embeddings, and a key/value cache for sampling (`decode=True`: init with a
  [batch, max_length] input, then feed one token per call with its `positions`)."""

  causal: bool = True

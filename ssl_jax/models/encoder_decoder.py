"""T5-style encoder-decoder over the shared `TransformerEncoder` stacks."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ssl_jax.models.transformer import (
  TEXT_DERIVED,
  TextEmbedding,
  TransformerEncoder,
  resolve_size,
)
from ssl_jax.registry import MODELS


@MODELS.register("transformer_encoder_decoder", derived=TEXT_DERIVED)
class TransformerEncoderDecoder(nn.Module):
  """T5-style encoder-decoder: one shared embedding, a bidirectional encoder, and a causal
  decoder whose blocks also cross-attend to the encoder output; tied output projection.

  `__call__(inputs, input_valid, decoder_inputs, decoder_valid, train)` returns decoder hidden
  states [batch, target_length, width]; `attend` projects them onto the vocabulary.
  `decoder_depth` 0 gives the decoder the encoder's depth.
  """

  vocab_size: int
  size: str = "mini"
  width: int = 0
  depth: int = 0
  decoder_depth: int = 0
  num_heads: int = 0
  mlp_dim: int = 0
  max_length: int = 512
  dropout_rate: float = 0.1
  dtype: str = "float32"
  norm_epsilon: float = 1e-6
  remat: bool = False
  attention_impl: str = "xla"

  @property
  def dims(self) -> dict[str, int]:
    return resolve_size(
      self.size, width=self.width, depth=self.depth, num_heads=self.num_heads, mlp_dim=self.mlp_dim
    )

  def _stack_options(self) -> dict:
    """The options both stacks share (each with its own position table)."""
    dims = self.dims
    return dict(
      vocab_size=self.vocab_size,
      width=dims["width"],
      num_heads=dims["num_heads"],
      mlp_dim=dims["mlp_dim"],
      max_length=self.max_length,
      dropout_rate=self.dropout_rate,
      dtype=self.dtype,
      norm_epsilon=self.norm_epsilon,
      remat=self.remat,
      own_positions=True,
      attention_impl=self.attention_impl,
    )

  def setup(self):
    # One token table for both stacks (T5's shared vocabulary); positions are per stack, so
    # decoder step t carries no built-in pull towards encoder position t.
    self.shared = TextEmbedding(
      self.vocab_size, self.dims["width"], self.max_length, self.dtype, with_positions=False
    )
    common = dict(self._stack_options(), shared_embed=self.shared)
    self.encoder = TransformerEncoder(depth=self.dims["depth"], **common)
    self.decoder = TransformerEncoder(
      depth=self.decoder_depth or self.dims["depth"], causal=True, cross_attention=True, **common
    )

  def standalone_encoder(self) -> TransformerEncoder:
    """The encoder stack as a module of its own, the shared token table its `embed`: its
    params are {**params["encoder"], "embed": params["shared"]} of this model's."""
    return TransformerEncoder(depth=self.dims["depth"], **self._stack_options(), parent=None)

  def encode(
    self, inputs: jnp.ndarray, input_valid: jnp.ndarray, train: bool = True
  ) -> jnp.ndarray:
    return self.encoder(inputs, input_valid, train=train)

  def __call__(
    self,
    inputs: jnp.ndarray,
    input_valid: jnp.ndarray,
    decoder_inputs: jnp.ndarray,
    decoder_valid: jnp.ndarray,
    train: bool = True,
  ) -> jnp.ndarray:
    encoded = self.encode(inputs, input_valid, train)
    return self.decoder(
      decoder_inputs, decoder_valid, train=train, context=encoded, context_valid=input_valid
    )

  def attend(self, hidden: jnp.ndarray) -> jnp.ndarray:
    return self.shared.attend(hidden)

"""Small MLP heads shared by the pretext tasks (projectors, predictors, classifiers)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class MLPHead(nn.Module):
  """Linear -> BatchNorm -> ReLU, repeated, then a final linear layer (the SimCLR projector).

  Attributes:
    hidden_dim: width of the hidden layers.
    output_dim: width of the output.
    num_layers: number of linear layers (>= 1); 1 means a plain linear map.
    batch_norm_output: add a BatchNorm without affine parameters on the output (MoCo v3/BYOL style).
  """

  hidden_dim: int
  output_dim: int
  num_layers: int = 2
  batch_norm_output: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    for _ in range(self.num_layers - 1):
      x = nn.Dense(self.hidden_dim, use_bias=False)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
    x = nn.Dense(self.output_dim, use_bias=not self.batch_norm_output)(x)
    if self.batch_norm_output:
      x = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, use_scale=False, use_bias=False
      )(x)
    return x


class LinearClassifier(nn.Module):
  """A linear layer with the `train` argument every task module takes (online probe, rotation)."""

  num_classes: int

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    del train
    return nn.Dense(self.num_classes)(x)


class TokenTagger(nn.Module):
  """encoder -> dropout -> a linear layer on every token: [B, L, num_labels] float32 logits
  (Hugging Face's `BertForTokenClassification` layout; `token_types` as the encoder takes
  them)."""

  encoder: nn.Module
  num_labels: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(
    self,
    tokens: jnp.ndarray,
    valid: jnp.ndarray,
    train: bool,
    token_types: jnp.ndarray | None = None,
  ) -> jnp.ndarray:
    hidden = self.encoder(tokens, valid, train=train, token_types=token_types)
    hidden = nn.Dropout(self.dropout_rate)(hidden, deterministic=not train)
    return nn.Dense(self.num_labels, name="head")(hidden.astype(jnp.float32))

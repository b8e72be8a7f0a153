"""Parameter-efficient fine-tuning methods behind one registry.

A fine-tune with `task_kwargs.method="peft"` freezes the pretrained encoder and trains the head
plus the parameters of the method named in the nested block `task_kwargs.peft`, e.g.
`{"name": "lora", "rank": 8, "targets": "attention/(query|value)$"}`; every other key is an
option of that method with its default in the resolved config. A method wraps a model call
(`flax.linen.intercept_methods`), so no model code knows about it. A new method is one class
here (or in its own module) registered under a name.
"""

from __future__ import annotations

import abc
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.adapt import bottleneck, lora, prompts
from ssl_jax.registry import ConfigError, Part, Registry, build_part

PyTree = Any
PEFT: Registry[Any] = Registry("PEFT method")

# Every convolution of a ResNet and the query/value projections of a Transformer (LoRA's paper
# and peft adapt query and value; on a ResNet the convolutions are all there is).
DEFAULT_LORA_TARGETS = r"Conv_\d+$|attention/(query|value)$"


class PeftMethod(Part):
  """One parameter-efficient method: its parameters for a model, and the model applied with
  them. `modalities` lists the inputs it works on."""

  modalities: tuple[str, ...] = ("image", "text")

  @abc.abstractmethod
  def init(self, key: jax.Array, model: nn.Module, variables: PyTree, *args, **kwargs) -> PyTree:
    """The method's parameters for the layers `model.apply(variables, *args, **kwargs)` calls."""

  @abc.abstractmethod
  def apply(
    self,
    model: nn.Module,
    variables: PyTree,
    params: PyTree,
    *args,
    dropout_key: jax.Array | None = None,
    **kwargs,
  ) -> Any:
    """`model.apply(variables, *args, **kwargs)` with the method's `params` in place."""

  def prepare_tokens(self, tokens: jnp.ndarray, placeholder: int) -> jnp.ndarray:
    """The token rows the adapted model reads (prompt tuning reserves positions). Default: as
    they are."""
    del placeholder
    return tokens

  def restore_positions(self, outputs: jnp.ndarray, fill: jnp.ndarray) -> jnp.ndarray:
    """Per-position outputs [B, L, ...] of `prepare_tokens`' rows moved back to the original
    rows' positions; positions the method dropped get `fill` [...] (token tagging). Default:
    as they are."""
    del fill
    return outputs


@PEFT.register("lora")
class LoRA(PeftMethod):
  """Low-rank updates B A (scale alpha / rank) of the kernels of the layers whose path matches
  `targets`; `dropout` on the adapters' inputs (Hu et al. 2021)."""

  def __init__(
    self,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets: str = DEFAULT_LORA_TARGETS,
  ):
    if rank < 1:
      raise ConfigError(f"config.task_kwargs.peft.rank must be >= 1, got {rank}.")
    self.config = lora.LoraConfig(rank, alpha, dropout, targets)

  def init(self, key, model, variables, *args, **kwargs):
    return lora.init_adapters(key, lora.find_layers(model, variables, *args, **kwargs), self.config)

  def apply(self, model, variables, params, *args, dropout_key=None, **kwargs):
    return lora.apply(
      model, variables, params, self.config, *args, dropout_key=dropout_key, **kwargs
    )


@PEFT.register("adapter")
class BottleneckAdapter(PeftMethod):
  """A bottleneck MLP of width `size` after each layer matching `targets`, residual and
  zero-initialised (Houlsby et al. 2019)."""

  def __init__(self, size: int = 16, targets: str = r"(attention/out|mlp_out)$"):
    if size < 1:
      raise ConfigError(f"config.task_kwargs.peft.size must be >= 1, got {size}.")
    self.config = bottleneck.AdapterConfig(size, targets)

  def init(self, key, model, variables, *args, **kwargs):
    layers = bottleneck.find_layers(model, variables, *args, **kwargs)
    return bottleneck.init_adapters(key, layers, self.config)

  def apply(self, model, variables, params, *args, dropout_key=None, **kwargs):
    del dropout_key
    return bottleneck.apply(model, variables, params, *args, **kwargs)


@PEFT.register("prefix")
class PrefixTuning(PeftMethod):
  """`length` learned keys and values prepended in every self-attention layer (Li & Liang
  2021); Transformers only."""

  def __init__(self, length: int = 10, init_std: float = 0.02):
    if length < 1:
      raise ConfigError(f"config.task_kwargs.peft.length must be >= 1, got {length}.")
    self.config = prompts.PrefixConfig(length, init_std)

  def init(self, key, model, variables, *args, **kwargs):
    layers = prompts.attention_layers(model, variables, *args, **kwargs)
    return prompts.init_prefixes(key, layers, self.config)

  def apply(self, model, variables, params, *args, dropout_key=None, **kwargs):
    del dropout_key
    return prompts.apply_prefixes(model, variables, params, *args, **kwargs)


@PEFT.register("prompt")
class PromptTuning(PeftMethod):
  """`length` learned input embeddings at reserved positions from `start` (after [CLS])
  (Lester et al. 2021); token inputs only."""

  modalities = ("text",)

  def __init__(self, length: int = 10, init_std: float = 0.02, start: int = 1):
    if length < 1:
      raise ConfigError(f"config.task_kwargs.peft.length must be >= 1, got {length}.")
    self.config = prompts.PromptConfig(length, init_std, start)

  def init(self, key, model, variables, *args, **kwargs):
    layers = prompts.embedding_layers(model, variables, *args, **kwargs)
    return prompts.init_prompts(key, layers, self.config)

  def apply(self, model, variables, params, *args, dropout_key=None, **kwargs):
    del dropout_key
    return prompts.apply_prompts(model, variables, params, *args, start=self.config.start, **kwargs)

  def prepare_tokens(self, tokens, placeholder):
    # Any non-padding token would do: the prompt vectors replace the placeholders' embeddings.
    return prompts.reserve_prompt_positions(
      tokens, self.config.length, placeholder, self.config.start
    )

  def restore_positions(self, outputs, fill):
    # The inverse of reserve_prompt_positions: drop the prompt slots; the row's last `length`
    # tokens were cut to make room, so their outputs are `fill`.
    start, length = self.config.start, self.config.length
    tail = jnp.broadcast_to(fill, (outputs.shape[0], length, *outputs.shape[2:]))
    return jnp.concatenate([outputs[:, :start], outputs[:, start + length :], tail], 1)


def build_peft(block: dict[str, Any], modality: str) -> PeftMethod:
  """The method a `task_kwargs.peft` block names, built with the block's other options."""
  return build_part(PEFT, {"name": "lora", **block}, modality, "config.task_kwargs.peft")

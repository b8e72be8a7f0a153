"""The reward contract and the weighted sum the reward task optimises.

A reward is a class registered in `REWARDS`, built as `Reward(context, **options)`, and called
as `reward(prompts, completions, batch) -> [N]` float32 scores, where prompts [N, P] and
completions [N, C] are token ids (right-padded with the pad id; a completion ends with its EOS
when it has one) and `batch` holds the prompts' other fields (e.g. a start node), each
repeated per completion. A host reward (`on_host = True`) gets numpy arrays and may decode
text; the task calls it through `jax.pure_callback` inside the jitted step. A device reward
gets traced jax arrays (a learned reward model). What a reward reads from the prompts
dataset's facts it declares in `needs_info`, checked before any work.

  config.task_kwargs.rewards = {"shortest_path": {"weight": 1.0},
                                "target_length": {"weight": 0.2, "length": 12}}
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.data.tokenizer import TextTokenizer
from ssl_jax.errors import ConfigError
from ssl_jax.registry import Registry

REWARDS: Registry[Any] = Registry("reward")
WEIGHT = "weight"  # every reward's extra option in config.task_kwargs.rewards


@dataclasses.dataclass(frozen=True)
class RewardContext:
  """What a reward may use: the prompts dataset's facts, its tokenizer (to decode), the
  special ids, the completion length and the policy's row length."""

  info: dict[str, Any]
  tokenizer: TextTokenizer | None
  eos_id: int
  pad_id: int
  max_new_tokens: int
  max_length: int


class Reward(abc.ABC):
  """One scored property of a completion (see the module docstring)."""

  on_host: ClassVar[bool] = True
  needs_info: ClassVar[tuple[str, ...]] = ()

  def __init__(self, context: RewardContext):
    self.context = context

  @abc.abstractmethod
  def __call__(self, prompts: Any, completions: Any, batch: dict[str, Any]) -> Any:
    """[N] float32 scores."""

  def completion_texts(self, completions: np.ndarray) -> list[str]:
    """The decoded text of each completion (up to its EOS; special tokens dropped)."""
    if self.context.tokenizer is None:
      raise ConfigError(f"Reward {type(self).__name__} decodes text; the data has no tokenizer.")
    return [
      self.context.tokenizer.decode(row[row != self.context.pad_id].tolist()) for row in completions
    ]


def completion_lengths(completions: Any, eos_id: int, pad_id: int) -> Any:
  """[N] tokens of each completion before its EOS (numpy or jax)."""
  return ((completions != pad_id) & (completions != eos_id)).sum(-1)


def check_rewards(rewards: dict[str, dict[str, Any]], info: dict[str, Any]) -> None:
  """At least one reward; each one's data facts present; weights finite numbers."""
  if not rewards:
    raise ConfigError(
      f"config.task_kwargs.rewards is empty; name at least one of {REWARDS.names()} "
      "({name: {'weight': w, options...}})."
    )
  for name, options in rewards.items():
    missing = [key for key in REWARDS.get(name).needs_info if key not in info]
    if missing:
      raise ConfigError(
        f"Reward {name!r} reads {missing} from the prompts' dataset facts, which "
        f"config.data.name does not provide (it has {sorted(info)})."
      )
    weight = options.get(WEIGHT, 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight):
      raise ConfigError(
        f"config.task_kwargs.rewards.{name}.weight must be a number, got {weight!r}."
      )


class WeightedRewards:
  """Σ_k weight_k reward_k, with every component kept for the metrics."""

  def __init__(self, rewards: dict[str, dict[str, Any]], context: RewardContext):
    check_rewards(rewards, context.info)
    self.names = sorted(rewards)
    self.weights = {n: float(rewards[n].get(WEIGHT, 1.0)) for n in self.names}
    self.parts = {
      n: REWARDS.build(n, {k: v for k, v in rewards[n].items() if k != WEIGHT}, context)
      for n in self.names
    }

  def __call__(
    self, prompts: jax.Array, completions: jax.Array, batch: dict[str, jax.Array]
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(total [N], {name: component [N]}) inside jit."""
    host = [n for n in self.names if self.parts[n].on_host]
    components = {}
    if host:

      def on_host(prompts, completions, batch):
        prompts, completions = np.asarray(prompts), np.asarray(completions)
        batch = {k: np.asarray(v) for k, v in batch.items()}
        scores = [np.asarray(self.parts[n](prompts, completions, batch), np.float32) for n in host]
        return np.stack(scores)

      shape = jax.ShapeDtypeStruct((len(host), completions.shape[0]), jnp.float32)
      scores = jax.pure_callback(on_host, shape, prompts, completions, batch)
      components.update({n: scores[i] for i, n in enumerate(host)})
    for n in self.names:
      if not self.parts[n].on_host:
        components[n] = self.parts[n](prompts, completions, batch).astype(jnp.float32)
    total = sum(self.weights[n] * components[n] for n in self.names)
    return total, components


def join_prompt_completion(
  prompts: jax.Array, prompt_lengths: jax.Array, completions: jax.Array, pad_id: int
) -> jax.Array:
  """[N, P + C] each row's prompt tokens followed directly by its completion, then padding."""
  width = prompts.shape[1] + completions.shape[1]
  j = jnp.arange(width)[None, :]
  lengths = prompt_lengths[:, None]
  from_prompt = jnp.take_along_axis(prompts, jnp.minimum(j, prompts.shape[1] - 1), 1)
  index = jnp.clip(j - lengths, 0, completions.shape[1] - 1)
  from_completion = jnp.take_along_axis(completions, index, 1)
  joined = jnp.where(j < lengths, from_prompt, from_completion)
  return jnp.where(j < lengths + completions.shape[1], joined, pad_id)

"""Rule-based rewards: a target completion length, keywords present, a regular expression
matched. Scores are in [0, 1]."""

from __future__ import annotations

import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from ssl_jax.errors import ConfigError
from ssl_jax.rewards.base import REWARDS, Reward, RewardContext, completion_lengths


@REWARDS.register("target_length")
class TargetLength(Reward):
  """1 - |tokens - length| / length, floored at 0: completions of `length` tokens (EOS not
  counted) score 1. Computed on device."""

  on_host = False

  def __init__(self, context: RewardContext, length: int = 16):
    super().__init__(context)
    if int(length) < 1:
      raise ConfigError(
        f"config.task_kwargs.rewards.target_length.length must be >= 1, got {length!r}."
      )
    self.length = int(length)

  def __call__(self, prompts, completions, batch):
    del prompts, batch
    tokens = completion_lengths(completions, self.context.eos_id, self.context.pad_id)
    return jnp.maximum(0.0, 1.0 - jnp.abs(tokens - self.length) / self.length)


def check_keywords(options: dict[str, Any]) -> None:
  if "keywords" in options and not [w for w in str(options["keywords"]).split(",") if w.strip()]:
    raise ConfigError(
      "config.task_kwargs.rewards.keyword.keywords names no keyword (comma-separated words)."
    )


@REWARDS.register("keyword", check=check_keywords)
class Keyword(Reward):
  """The fraction of `keywords` (comma-separated) that occur in the completion's text, as
  words (`whole_words`) or anywhere; case-insensitive unless `case_sensitive`."""

  def __init__(
    self,
    context: RewardContext,
    keywords: str = "log",
    whole_words: bool = True,
    case_sensitive: bool = False,
  ):
    super().__init__(context)
    flags = 0 if case_sensitive else re.IGNORECASE
    words = [w.strip() for w in keywords.split(",") if w.strip()]
    wrap = (lambda w: rf"\b{re.escape(w)}\b") if whole_words else re.escape
    self.patterns = [re.compile(wrap(w), flags) for w in words]

  def __call__(self, prompts, completions, batch):
    del prompts, batch
    texts = self.completion_texts(completions)
    return np.array(
      [np.mean([bool(p.search(t)) for p in self.patterns]) for t in texts], np.float32
    )


def check_pattern(options: dict[str, Any]) -> None:
  try:
    re.compile(options.get("pattern", ""))
  except re.error as error:
    raise ConfigError(
      f"config.task_kwargs.rewards.regex.pattern={options.get('pattern')!r} is not a regular "
      f"expression ({error})."
    ) from None


@REWARDS.register("regex", check=check_pattern)
class Regex(Reward):
  """1 where `pattern` (Python `re`) matches the completion's text (`re.search`), else 0."""

  def __init__(self, context: RewardContext, pattern: str = r"\.$"):
    super().__init__(context)
    self.pattern = re.compile(pattern)

  def __call__(self, prompts, completions, batch):
    del prompts, batch
    return np.array(
      [bool(self.pattern.search(t)) for t in self.completion_texts(completions)], np.float32
    )

"""Type and range checks of option values, before any work.

Every option of a registered part has a default in its builder's signature; a value set in a
config must have the default's type (a bool for a bool, an integer for an integer, a number
for a float, a string for a string). An option declares its range beside its default, in its
annotation:

  def __init__(self, power: Annotated[float, Range(0.0)] = 1.0,
               purity: Annotated[float, Range(0.0, 1.0, low_open=True)] = 0.95): ...

An option that declares none gets the range its name implies, one convention for every part: rates, probabilities, fractions, ratios, dropouts and momenta lie in [0, 1], percentages
in [0, 100], temperatures, learning rates and epsilons of norms are positive, counts that
cannot be zero (draws, k, rank, sequence and vocabulary sizes, ...) are at least 1, and sizes, counts, dimensions,
steps and weights are never negative. An option whose default is negative (a sentinel such as
-1 for "derive it") is exempt from its range.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from ssl_jax.errors import ConfigError

# (pattern on the option name, lower bound, lower inclusive, upper bound, upper inclusive).
_RANGES: tuple[tuple[str, float, bool, float, bool], ...] = (
  (r"(^|_)(temperature|temp|norm_epsilon|learning_rate|span_length)$", 0.0, False, math.inf, True),
  (
    r"(^|_)(draws|k|rank|threads|iterations|seq_len|vocab_size|patch_size|queue_size|out_dim)$",
    1.0,
    True,
    math.inf,
    True,
  ),
  (
    r"(^|_)(rate|prob|probability|fraction|ratio|dropout|momentum|threshold|density|smoothing|"
    r"factor)$",
    0.0,
    True,
    1.0,
    True,
  ),
  (r"(^|_)top_p$|(^|_)layer_decay$", 0.0, False, 1.0, True),
  (r"(^|_)percent$", 0.0, True, 100.0, True),
  (
    r"(^|_)(size|sizes|dim|width|depth|heads|layers|steps|length|len|tokens|ids|k|rank|draws|"
    r"iterations|threads|samples|crops|coeff|coefficient|weight|decay|alpha|l2|std|eps|offdiag|"
    r"loss|train|test|documents|predictions|per_class|draw|budget|every|patience|clip_norm|"
    r"step_size)$|^num_|^max_",
    0.0,
    True,
    math.inf,
    True,
  ),
)


@dataclasses.dataclass(frozen=True)
class Range:
  """The values an option accepts: [low, high], each end open or closed (high=inf: no top)."""

  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = False

  def contains(self, value: float) -> bool:
    above = value > self.low if self.low_open else value >= self.low
    below = value < self.high if self.high_open else value <= self.high
    return above and below

  def text(self) -> str:
    return _bounds_text(self.low, not self.low_open, self.high, not self.high_open)


@dataclasses.dataclass(frozen=True)
class OneOf:
  """The values a string option accepts."""

  choices: tuple[str, ...]

  def contains(self, value: Any) -> bool:
    return value in self.choices

  def text(self) -> str:
    return f"one of {list(self.choices)}"


def declared_ranges(fn: Callable[..., Any]) -> dict[str, Range | OneOf]:
  """{option: Range or OneOf} declared in `fn`'s annotations (`Annotated[float, Range(...)]`,
  `Annotated[str, OneOf(...)]`)."""
  try:
    hints = typing.get_type_hints(fn, include_extras=True)
  except (NameError, TypeError):  # an annotation naming what only type checkers import
    hints = {
      name: p.annotation
      for name, p in inspect.signature(fn).parameters.items()
      if typing.get_origin(p.annotation) is typing.Annotated
    }
  ranges = {}
  for name, hint in hints.items():
    if typing.get_origin(hint) is typing.Annotated:
      for extra in hint.__metadata__:
        if isinstance(extra, (Range, OneOf)):
          ranges[name] = extra
  return ranges


def _type_name(value: Any) -> str:
  return type(value).__name__


def check_type(where: str, key: str, value: Any, default: Any) -> None:
  """A ConfigError when `value` does not have the type of `default`."""
  if value is None or default is None:
    return
  if isinstance(default, bool):
    ok = isinstance(value, bool)
  elif isinstance(default, int):
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif isinstance(default, float):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  elif isinstance(default, str):
    ok = isinstance(value, str)
  else:
    return  # lists and tuples: their parts check their items
  if not ok:
    raise ConfigError(
      f"{where}.{key}={value!r} is a {_type_name(value)}; it takes a {_type_name(default)} "
      f"(default {default!r})."
    )


def _bounds_text(low: float, low_in: bool, high: float, high_in: bool) -> str:
  if high == math.inf:
    return f"{'>=' if low_in else '>'} {low:g}"
  return f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def check_range(
  where: str, key: str, value: Any, default: Any = None, declared: Range | OneOf | None = None
) -> None:
  """A ConfigError when a numeric `value` is outside its declared range, or (none declared)
  the range its name implies."""
  if isinstance(declared, OneOf):
    if not declared.contains(value):
      raise ConfigError(f"{where}.{key}={value!r}; valid: {list(declared.choices)}.")
    return
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return
  if isinstance(value, float) and not math.isfinite(value):
    raise ConfigError(f"{where}.{key}={value!r} must be a finite number.")
  if declared is not None:
    if not declared.contains(value):
      raise ConfigError(f"{where}.{key}={value!r} is out of range: it must be {declared.text()}.")
    return
  if isinstance(default, (int, float)) and not isinstance(default, bool) and default < 0:
    return  # a sentinel default (-1: derive it)
  for pattern, low, low_in, high, high_in in _RANGES:
    if re.search(pattern, key):
      inside = (value >= low if low_in else value > low) and (
        value <= high if high_in else value < high
      )
      if not inside:
        raise ConfigError(
          f"{where}.{key}={value!r} is out of range: it must be "
          f"{_bounds_text(low, low_in, high, high_in)}."
        )
      return


def check_values(
  where: str,
  options: Mapping[str, Any],
  defaults: Mapping[str, Any],
  ranges: Mapping[str, Range | OneOf] | None = None,
) -> None:
  """Type (against `defaults`) and range checks (`ranges` declared, else by name) of every
  option in `options`."""
  ranges = ranges or {}
  for key, value in options.items():
    default = defaults.get(key)
    check_type(where, key, value, default)
    check_range(where, key, value, default, ranges.get(key))
    if isinstance(value, (list, tuple)):
      for item in value:
        check_range(where, key, item, declared=ranges.get(key))

"""Named registries: the config picks every part (task, model, dataset, evaluator) by string.

A lookup of an unknown name raises `UnknownNameError` listing every valid name and the closest
matches, so a typo in `--config.model=resnt` stops the run before any work with a useful message.
Options passed to a registered builder are checked against its signature the same way.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from ssl_jax.errors import ConfigError
from ssl_jax.value_checks import check_values, declared_ranges

T = TypeVar("T")


class UnknownNameError(ConfigError, KeyError):
  """A registry lookup with a name that was never registered."""

  def __str__(self) -> str:  # KeyError would otherwise print the repr of the message.
    return str(self.args[0])


def _suggest(name: str, choices: Iterable[str]) -> str:
  close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
  return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_options(
  what: str, given: Iterable[str], valid: Iterable[str], *, where: str = ""
) -> None:
  """Raises ConfigError naming every key of `given` that is not in `valid`."""
  valid = sorted(valid)
  unknown = sorted(set(given) - set(valid))
  if unknown:
    hints = "".join(_suggest(u, valid) for u in unknown)
    location = f" in {where}" if where else ""
    raise ConfigError(
      f"Unknown option(s) {unknown} for {what}{location}. Valid options: {valid}.{hints}"
    )


def _option_parameters(fn: Callable[..., Any], skip: int) -> list[inspect.Parameter]:
  return [
    p
    for p in list(inspect.signature(fn).parameters.values())[skip:]
    if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
  ]


def accepted_options(fn: Callable[..., Any], skip: int = 0) -> list[str] | None:
  """Keyword names `fn` accepts (after its first `skip` positional ones); None if it takes **kw."""
  params = list(inspect.signature(fn).parameters.values())[skip:]
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
    return None
  return [
    p.name
    for p in params
    if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
  ]


def _is_plain(value: Any) -> bool:
  """Whether a default can live in a ConfigDict and be set from the command line."""
  if isinstance(value, (bool, int, float, str)):
    return True
  return isinstance(value, (tuple, list)) and all(
    isinstance(v, (bool, int, float, str)) for v in value
  )


@dataclasses.dataclass(frozen=True)
class Declared:
  """What a part declares when it registers, all checked before any data is read.

  requires: the task capabilities (`ssl_jax.capabilities`) the part uses (an evaluator's);
  check: `check(options)` raises ConfigError for option values no signature can express (a
    name inside a list option, a pair of options that exclude each other);
  pairing: `pairing(options, task_class)` rejects options that task class cannot serve;
  derived: options the data fills in (a vocabulary size), which get no default;
  facts: what a part is, for pairing it with others (a dataset's `modality`, its static
    `splits`, whether it has `labels`).
  Ranges of option values are declared beside their defaults (`value_checks.Range`)."""

  requires: tuple[type, ...] = ()
  check: Callable[[dict[str, Any]], None] | None = None
  pairing: Callable[[dict[str, Any], type], None] | None = None
  derived: tuple[str, ...] = ()
  facts: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _same_definition(a: Any, b: Any) -> bool:
  """Whether two entries are one definition run twice (a notebook cell re-run)."""
  key = lambda e: (getattr(e, "__module__", None), getattr(e, "__qualname__", None))
  return key(a) == key(b) and key(a)[1] is not None


class Registry(Generic[T]):
  """A mapping from names to builders of one kind of part (e.g. "model")."""

  def __init__(self, kind: str, required_facts: Mapping[str, tuple[Any, ...]] | None = None):
    """required_facts: {fact: its valid values} every entry must declare when it registers
    (a dataset's `modality`), so pairing never meets an entry that is silent about it."""
    self.kind = kind
    self.required_facts = dict(required_facts or {})
    self._entries: dict[str, T] = {}
    self._declared: dict[str, Declared] = {}

  def register(
    self,
    name: str,
    requires: tuple[type, ...] = (),
    check: Callable[[dict[str, Any]], None] | None = None,
    pairing: Callable[[dict[str, Any], type], None] | None = None,
    derived: tuple[str, ...] = (),
    **facts: Any,
  ) -> Callable[[T], T]:
    """Decorator: `@MODELS.register("resnet")` above a class or function, with what the part
    declares (see `Declared`), e.g. `@DATASETS.register("digits", modality="image",
    splits=("train", "test"), labels=True)`."""
    for fact, valid in self.required_facts.items():
      if facts.get(fact) not in valid:
        raise ValueError(
          f"{self.kind} {name!r} must declare {fact}= one of {list(valid)}, "
          f"not {facts.get(fact)!r}."
        )
    declared = Declared(tuple(requires), check, pairing, tuple(derived), dict(facts))

    def add(entry: T) -> T:
      previous = self._entries.get(name)
      if previous is not None and previous is not entry and not _same_definition(previous, entry):
        raise ValueError(f"{self.kind} {name!r} is already registered.")
      self._entries[name] = entry
      self._declared[name] = declared
      return entry

    return add

  def declared(self, name: str) -> Declared:
    """What entry `name` declared at registration."""
    self.get(name)
    return self._declared[name]

  def fact(self, name: str, key: str, default: Any = None) -> Any:
    """One fact entry `name` declared (`modality`, `splits`, ...), or `default`."""
    return self.declared(name).facts.get(key, default)

  def requirements(self, name: str) -> tuple[type, ...]:
    """The capabilities entry `name` declared at registration."""
    return self.declared(name).requires

  def check_pairing(self, name: str, options: Mapping[str, Any], task_class: type) -> None:
    """Runs the `pairing` check entry `name` declared, for `task_class` (none: no-op)."""
    pairing = self.declared(name).pairing
    if pairing is not None:
      pairing(dict(options), task_class)

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise UnknownNameError(
        f"Unknown {self.kind} {name!r}. Valid {self.kind} names: {self.names()}."
        + _suggest(name, self._entries)
      )
    return self._entries[name]

  def _target(self, name: str, num_positional: int) -> tuple[Callable[..., Any], int]:
    """(the function whose signature lists `name`'s options, how many leading arguments of
    it are not options: `self` for a class and the caller's positional ones)."""
    builder = self.get(name)
    if inspect.isclass(builder):
      return builder.__init__, num_positional + 1
    return builder, num_positional

  def option_defaults(self, name: str, num_positional: int = 0) -> dict[str, Any]:
    """{option: default} of entry `name` for the options a config can set: those with a
    default that is a plain value (numbers, strings, booleans, tuples or lists of them).
    The entry's `derived` options (facts the data gives, e.g. a vocabulary size) and flax's
    `parent` / `name` are left out."""
    target, skip = self._target(name, num_positional)
    derived = set(self.declared(name).derived) | {"parent", "name"}
    return {
      p.name: (list(p.default) if isinstance(p.default, tuple) else p.default)
      for p in _option_parameters(target, skip)
      if p.name not in derived and _is_plain(p.default)
    }

  def validate(
    self, name: str, options: Mapping[str, Any], num_positional: int = 0, where: str = ""
  ) -> None:
    """Checks, without building anything, that `name` exists and accepts every option.

    `num_positional` counts the leading arguments the caller passes itself (not from config).
    """
    target, skip = self._target(name, num_positional)
    valid = accepted_options(target, skip=skip)
    if valid is not None:
      check_options(f"{self.kind} {name!r}", options, valid, where=where)
    check_values(
      where or f"{self.kind} {name!r}",
      options,
      self.option_defaults(name, num_positional),
      declared_ranges(target),
    )
    check = self.declared(name).check
    if check is not None:
      check(dict(options))

  def build(self, name: str, options: Mapping[str, Any] | None = None, *args: Any) -> Any:
    """Calls the builder registered as `name` with positional `args` and keyword `options`.

    Options the builder does not accept are a ConfigError that lists the ones it does.
    """
    options = dict(options or {})
    self.validate(name, options, num_positional=len(args))
    return self.get(name)(*args, **options)

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries


TASKS: Registry[Any] = Registry("task")
MODELS: Registry[Any] = Registry("model")
DATASETS: Registry[Any] = Registry("dataset", required_facts={"modality": ("image", "text")})
EVALUATORS: Registry[Any] = Registry("evaluator")


# --- Parts with modalities (PEFT methods, adversarial and semi-supervised parts, estimators) -----


class Part(abc.ABC):  # noqa: B024  (a base for the modalities check; parts add the methods)
  modalities: tuple[str, ...] = ("image", "text")


def build_part(registry: Registry, block: dict[str, Any], modality: str, where: str) -> Any:
  """The part `block["name"]` names, built with the block's other options, checked against
  the task's modality."""
  options = dict(block)
  name = options.pop("name", "none")
  check_modality(registry, name, modality, where)
  return registry.build(name, options)


def check_modality(registry: Registry, name: str, modality: str, where: str) -> None:
  """Raises ConfigError if part `name` of `registry` does not work on `modality` inputs."""
  modalities = registry.get(name).modalities
  if modality not in modalities:
    valid = [n for n in registry.names() if modality in registry.get(n).modalities]
    raise ConfigError(
      f"{where}.name={name!r} works on {list(modalities)} inputs, not {modality}; "
      f"valid for {modality}: {valid}."
    )

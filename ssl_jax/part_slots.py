"""Where a config names its parts: each schema declares its slots in one list, and one resolver
(`fill_defaults`) and one validator (`validate`) walk it, for the trainer's config and the
active-learning config alike.

A slot is one place a config names a part of a registry, in one of four forms:

  PAIR   `<section>.<key>` holds the name and `<section>.<key>_kwargs` its options
         (config.task + config.task_kwargs, config.active.strategy + strategy_kwargs);
  BLOCK  `<section>.<key>` is a block {"name": ..., options...} (config.data, a fine-tuning
         task's `peft`);
  MAP    `<section>.<key>` maps part names to their option blocks (config.evals, rewards);
  NAME   `<section>.<key>` holds a name and the part takes no options (the oracle).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import ml_collections

from ssl_jax.errors import ConfigError
from ssl_jax.registry import Registry, check_modality
from ssl_jax.value_checks import OneOf, Range, check_values

PAIR, BLOCK, MAP, NAME = "pair", "block", "map", "name"


@dataclasses.dataclass(frozen=True)
class Slot:
  """One place a config names a part of `registry` (see the module docstring for `form`).

  num_positional: the arguments the caller passes the part before its options;
  default_name: a BLOCK's name when the config gives none (None: the name is required);
  optional: a PAIR whose name may be "" (no part: active learning's `first_strategy`);
  extras: options every block of a MAP takes besides the part's own, with their defaults
    (an evaluator's `every`, a reward's `weight`), and `extra_ranges` their ranges;
  paired_by_modality: the part declares the modalities it works on, checked against the
    task's (PEFT methods, attacks)."""

  section: str
  key: str
  registry: Registry
  form: str = PAIR
  num_positional: int = 0
  default_name: str | None = None
  optional: bool = False
  extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  extra_ranges: Mapping[str, Range | OneOf] = dataclasses.field(default_factory=dict)
  paired_by_modality: bool = False

  @property
  def where(self) -> str:
    return ".".join(["config", *(p for p in (self.section, self.key) if p)])

  def holder(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict | None:
    """The section of `config` that holds the slot's key (None: the section is missing)."""
    section = config
    for part in filter(None, self.section.split(".")):
      section = section.get(part)
      if not isinstance(section, ml_collections.ConfigDict):
        return None
    return section

  def split_block(self, block: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the options the part takes, the MAP's extras set) of a block; `name` goes to neither."""
    options = {k: v for k, v in block.items() if k != "name" and k not in self.extras}
    return options, {k: block[k] for k in self.extras if k in block}


def _fill(section: ml_collections.ConfigDict, defaults: Mapping[str, Any]) -> None:
  """Adds each default whose key `section` lacks; set values (and FieldReferences) stay."""
  for key, value in defaults.items():
    if key not in section:
      section[key] = value


def fill_defaults(config: ml_collections.ConfigDict, slots: Sequence[Slot]) -> None:
  """Fills, in place, every option of every part the slots name with its default (values set
  stay). Unknown names and malformed blocks are left for `validate` to report."""
  for slot in slots:
    section = slot.holder(config)
    if section is None:
      continue
    with section.unlocked():
      _fill_slot(slot, section)


def _fill_slot(slot: Slot, section: ml_collections.ConfigDict) -> None:
  registry, value = slot.registry, section.get(slot.key)
  if slot.form == PAIR:
    options = section.get(f"{slot.key}_kwargs") or ml_collections.ConfigDict()
    if (
      isinstance(value, str)
      and value in registry
      and isinstance(options, (Mapping, ml_collections.ConfigDict))
    ):
      _fill(options, registry.option_defaults(value, slot.num_positional))
      section[f"{slot.key}_kwargs"] = options
  elif slot.form == BLOCK:
    block = ml_collections.ConfigDict() if value is None else value
    if not isinstance(block, ml_collections.ConfigDict):
      return
    if slot.default_name is not None:
      _fill(block, {"name": slot.default_name})
    if block.get("name") in registry:
      _fill(block, registry.option_defaults(block.name, slot.num_positional))
    section[slot.key] = block
  elif slot.form == MAP and isinstance(value, ml_collections.ConfigDict):
    for name in list(value.keys()):
      if value[name] is None:
        value[name] = ml_collections.ConfigDict()
      if name in registry and isinstance(value[name], ml_collections.ConfigDict):
        _fill(value[name], {**slot.extras, **registry.option_defaults(name, slot.num_positional)})


Part = tuple[str, dict[str, Any], dict[str, Any], str]  # (name, options, extras, where)


def parts(config: ml_collections.ConfigDict, slot: Slot) -> Iterator[Part]:
  """Each part `slot` names in `config`, checking the slot's shape: a missing name, a block
  without one, options or a map that are not blocks, are each a ConfigError."""
  section = slot.holder(config)
  value = None if section is None else section.get(slot.key)
  names = slot.registry.names()
  if slot.form in (PAIR, NAME):
    if not isinstance(value, str) or not (value or slot.optional):
      raise ConfigError(f"{slot.where} must name one of {names}; got {value!r}.")
    if value and slot.form == NAME:
      yield value, {}, {}, slot.where
    elif value:
      where = f"{slot.where}_kwargs"
      options = section.get(f"{slot.key}_kwargs") or {}
      if not isinstance(options, (Mapping, ml_collections.ConfigDict)):
        raise ConfigError(f"{where} must be a block of options, got {options!r}.")
      yield value, dict(options), {}, where
  elif slot.form == BLOCK:
    if value is None and slot.default_name is not None:
      return  # the default part, filled in by `fill_defaults`
    if not isinstance(value, ml_collections.ConfigDict) or "name" not in value:
      raise ConfigError(
        f"{slot.where} is a block {{'name': ..., options...}} naming one of {names}; got {value!r}."
      )
    yield value.name, *slot.split_block(value), slot.where
  elif value is not None:
    if not isinstance(value, ml_collections.ConfigDict):
      raise ConfigError(f"{slot.where} maps names of {names} to their options; got {value!r}.")
    for name, block in value.items():
      block = ml_collections.ConfigDict() if block is None else block
      if not isinstance(block, ml_collections.ConfigDict):
        raise ConfigError(f"{slot.where}.{name} must be a block of options, got {block!r}.")
      yield name, *slot.split_block(block), f"{slot.where}.{name}"


def validate(
  config: ml_collections.ConfigDict, slots: Sequence[Slot], modality: str | None = None
) -> None:
  """Every part every slot names: a known name, options it accepts, their types and declared
  ranges, its own declared check, the MAP's extras, and (where the slot says) the modality."""
  for slot in slots:
    for name, options, extras, where in parts(config, slot):
      slot.registry.validate(name, options, num_positional=slot.num_positional, where=where)
      check_values(where, extras, slot.extras, slot.extra_ranges)
      if slot.paired_by_modality and modality is not None:
        check_modality(slot.registry, name, modality, where)

"""`--config path/to/config.py` for the command line: the config file loaded, the names the
command line overrides applied first, and every option of every named part filled in with its
default before ml_collections applies the other overrides (so any valid option can be set).

This module knows no schema: the entry point that defines the flag passes the function that
fills its schema's defaults (the trainer's `config_base.resolve_defaults`, active learning's
`active.schema.fill_defaults`). A key names a part when it is a block's `name` or has a
`<key>_kwargs` block beside it (`task`, `model`, `active.strategy`, ...)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import ml_collections
from absl import flags
from ml_collections.config_flags import config_flags as config_flags_impl

from ssl_jax.errors import ConfigError

# Fills a loaded config, in place, with the defaults of every option of every part it names.
FillDefaults = Callable[[ml_collections.ConfigDict], Any]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config_file(
  path: str, option: str = "--config", example: str = "configs/simclr_digits.py"
) -> ml_collections.ConfigDict:
  """`get_config()` of a config file, as it is (a path relative to the repository root works
  from anywhere); a missing file is a ConfigError naming `option`."""
  for candidate in (path, os.path.join(REPO, path)):
    if os.path.isfile(candidate):
      spec = importlib.util.spec_from_file_location("config_file", candidate)
      module = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(module)
      return module.get_config()
  raise ConfigError(f"{option}={path!r} does not exist; give a file like {example}.")


# A command-line override of a config key: --config.<dotted key>=<value>.
_OVERRIDE = re.compile(r"^--config\.((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)=(.*)$")


def names_part(section: ml_collections.ConfigDict, key: str) -> bool:
  """Whether `section[key]` names a part: a block's `name`, or a key with `<key>_kwargs`."""
  return key == "name" or isinstance(section.get(f"{key}_kwargs"), ml_collections.ConfigDict)


class ResolvedConfigFileParser(config_flags_impl.ConfigFileFlagParser):
  """Loads a config file, sets the names the command line overrides (--config.task=...,
  --config.task_kwargs.peft.name=...; a changed name drops the old part's options), then fills
  in the default of every option of every part the config names (`fill_defaults`), so any
  valid option can be overridden. The other overrides apply after this, as ml_collections
  always applies them."""

  def __init__(self, fill_defaults: FillDefaults, **kwargs: Any):
    super().__init__(**kwargs)
    self.fill_defaults = fill_defaults

  def parse(self, path):
    config = super().parse(path)
    if not isinstance(config, ml_collections.ConfigDict):
      return config
    for argument in sys.argv[1:]:
      match = _OVERRIDE.match(argument)
      if match:
        *parents, leaf = match.group(1).split(".")
        target = config
        for parent in parents:
          target = target.get(parent) if isinstance(target, ml_collections.ConfigDict) else None
        value = match.group(2).strip("'\"")
        if (
          isinstance(target, ml_collections.ConfigDict)
          and leaf in target
          and names_part(target, leaf)
          and target[leaf] != value
        ):
          _switch(target, leaf, value)
    self.fill_defaults(config)
    return config


def _switch(section: ml_collections.ConfigDict, key: str, name: str) -> None:
  """Names another part: the old part's options go (the new part's defaults come in)."""
  if key == "name":  # a nested block {"name": ..., options...}: it becomes the new part's
    for option in [k for k in section.keys() if k != "name"]:
      del section[option]
  else:  # config.task / config.model / config.active.strategy: their options
    section[f"{key}_kwargs"] = ml_collections.ConfigDict()
  section[key] = name


def define_config_flag(fill_defaults: FillDefaults) -> flags.FlagHolder:
  """Defines --config (and its --config.<key> overrides) with `ResolvedConfigFileParser`."""
  parser = ResolvedConfigFileParser(fill_defaults, name="config", lock_config=False)
  flag = config_flags_impl._ConfigFlag(  # the flag DEFINE_config_file builds, with our parser
    parser=parser,
    serializer=flags.ArgumentSerializer(),
    name="config",
    default=None,
    help_string="Path to a config file.",
    flag_values=flags.FLAGS,
  )
  return flags.DEFINE_flag(flag, flags.FLAGS)

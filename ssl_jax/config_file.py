"""`--config path/to/config.py` for the command line: the config file loaded, the names the
command line overrides applied first, and every option of every named part filled in with its
default before ml_collections applies the other overrides (so any valid option can be set)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys

import ml_collections
from absl import flags
from ml_collections.config_flags import config_flags as config_flags_impl

from ssl_jax import data, evals, models, tasks  # noqa: F401  (the registries the defaults come from)
from ssl_jax.config_base import resolve_defaults
from ssl_jax.errors import ConfigError

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


# Keys whose value names a part (so the defaults filled in are that part's): overridden first.
_NAME_KEY = re.compile(
  r"^--config\.((?:[A-Za-z_]\w*\.)*(?:task|model|name|strategy|first_strategy|learner))=(.*)$"
)


class ResolvedConfigFileParser(config_flags_impl.ConfigFileFlagParser):
  """Loads a config file, sets the names the command line overrides (--config.task=...,
  --config.task_kwargs.peft.name=...; a changed name drops the old part's options), then fills
  in the default of every option of every part the config names
  (`config_base.resolve_defaults`), so any valid option can be overridden. The other overrides
  apply after this, as ml_collections always applies them."""

  def parse(self, path):
    config = super().parse(path)
    for argument in sys.argv[1:]:
      match = _NAME_KEY.match(argument)
      if match and isinstance(config, ml_collections.ConfigDict):
        *parents, leaf = match.group(1).split(".")
        target = config
        for parent in parents:
          target = target.get(parent) if isinstance(target, ml_collections.ConfigDict) else None
        value = match.group(2).strip("'\"")
        if isinstance(target, ml_collections.ConfigDict) and leaf in target:
          if target[leaf] != value:
            _switch(target, leaf, value)
    if isinstance(config, ml_collections.ConfigDict) and "task" in config:
      resolve_defaults(config)
    elif isinstance(config, ml_collections.ConfigDict) and "active" in config:
      from ssl_jax.discover.rounds import fill_part_defaults  # an active-learning config

      fill_part_defaults(config.active)
      config.lock()
    return config


def _switch(section: ml_collections.ConfigDict, key: str, name: str) -> None:
  """Names another part: the old part's options go (the new part's defaults come in)."""
  if key == "name":  # a nested block {"name": ..., options...}: it becomes the new part's
    for option in [k for k in section.keys() if k != "name"]:
      del section[option]
  else:  # config.task / config.model: their options
    section[f"{key}_kwargs"] = ml_collections.ConfigDict()
  section[key] = name


def define_config_flag() -> flags.FlagHolder:
  """Defines --config (and its --config.<key> overrides) with `ResolvedConfigFileParser`."""
  parser = ResolvedConfigFileParser(name="config", lock_config=False)
  flag = config_flags_impl._ConfigFlag(  # the flag DEFINE_config_file builds, with our parser
    parser=parser,
    serializer=flags.ArgumentSerializer(),
    name="config",
    default=None,
    help_string="Path to a config file.",
    flag_values=flags.FLAGS,
  )
  return flags.DEFINE_flag(flag, flags.FLAGS)

"""Command-line entry point.

  python -m ssl_jax.main --config configs/simclr_digits.py --workdir /tmp/simclr_digits \
      [--config.total_steps=300 --config.optim.learning_rate=1e-3 ...]
"""

from __future__ import annotations

import re
import sys

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections.config_flags import config_flags as config_flags_impl

from ssl_jax import train
from ssl_jax.checkpoint import CheckpointMismatchError
from ssl_jax.config_base import resolve_defaults
from ssl_jax.registry import ConfigError

# Keys whose value names a part (so the defaults filled in are that part's): overridden first.
_NAME_KEY = re.compile(r"^--config\.((?:[A-Za-z_]\w*\.)*(?:task|model|name))=(.*)$")


class _ResolvedConfigFileParser(config_flags_impl.ConfigFileFlagParser):
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
    if isinstance(config, ml_collections.ConfigDict):
      resolve_defaults(config)
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


def _define_config_flag() -> flags.FlagHolder:
  parser = _ResolvedConfigFileParser(name="config", lock_config=False)
  flag = config_flags_impl._ConfigFlag(  # the flag DEFINE_config_file builds, with our parser
    parser=parser,
    serializer=flags.ArgumentSerializer(),
    name="config",
    default=None,
    help_string="Path to a config file.",
    flag_values=flags.FLAGS,
  )
  return flags.DEFINE_flag(flag, flags.FLAGS)


_CONFIG = _define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.")
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Multi-process run (TPU pod slice, multi-node GPU): call "
  "jax.distributed.initialize(), which reads the cluster from the environment.",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    # Orbax logs every checkpoint step at INFO; the progress line says what matters.
    logging.set_verbosity(logging.WARNING)
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, FileNotFoundError, CheckpointMismatchError) as error:
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(2)
  except train.TrainingInterrupted as interrupted:
    print(str(interrupted), file=sys.stderr)
    sys.exit(143)
  except train.NonFiniteLossError as error:
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(3)


if __name__ == "__main__":
  app.run(main)

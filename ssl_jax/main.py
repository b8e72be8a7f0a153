"""Command-line entry point.

  python -m ssl_jax.main --config configs/simclr_digits.py --workdir /tmp/simclr_digits \
      [--config.total_steps=300 --config.optim.learning_rate=1e-3 ...]
"""

from __future__ import annotations

import sys

import jax
from absl import app, flags, logging

from ssl_jax import train
from ssl_jax.checkpoint import CheckpointMismatchError
from ssl_jax.config_file import define_config_flag
from ssl_jax.registry import ConfigError

_CONFIG = define_config_flag()
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

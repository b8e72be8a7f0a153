"""Command-line entry point of the trainer.

  python -m ssl_jax.main --config configs/simclr_digits.py --workdir /tmp/simclr_digits \
      [--config.total_steps=300 --config.optim.learning_rate=1e-3 ...]

Flags, distributed start-up and exit codes are `ssl_jax.cli`'s, shared by every entry point.
"""

from __future__ import annotations

from absl import app, flags

from ssl_jax import cli, train
from ssl_jax.config_base import resolve_defaults

FLAGS = cli.define_flags(resolve_defaults)
_REEVALUATE = flags.DEFINE_bool(
  "reevaluate",
  False,
  "Evaluate a finished run again (otherwise re-running it only reports its results).",
)


def main(argv: list[str]) -> None:
  cli.run_command(
    argv,
    FLAGS,
    lambda config, workdir: train.train_and_evaluate(config, workdir, reevaluate=_REEVALUATE.value),
  )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)

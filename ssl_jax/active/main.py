"""Command-line entry point of active learning (`ssl_jax.active.rounds`).

  python -m ssl_jax.active.main --config configs/active_learning_digits.py --workdir W \
      [--config.active.strategy=coreset --config.active.budgets='(10, 20, 30)' ...]

Same flags and outcomes as `ssl_jax.main` (`ssl_jax.cli`: a bad input is one `Error:` line and
exit 2); with `config.active.oracle="human"` a round that waits for labels exits 4 saying which
file to fill.
"""

from __future__ import annotations

from absl import app

from ssl_jax import cli
from ssl_jax.active.rounds import run_active_learning
from ssl_jax.active.schema import fill_defaults

FLAGS = cli.define_flags(fill_defaults)


def main(argv: list[str]) -> None:
  cli.run_command(argv, FLAGS, run_active_learning)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)

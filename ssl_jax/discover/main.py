"""Command-line entry point of active learning (`ssl_jax.discover.rounds`).

  python -m ssl_jax.discover.main --config configs/active_learning_digits.py --workdir W \
      [--config.active.strategy=coreset --config.active.budgets='(10, 20, 30)' ...]

Same flags and outcomes as `ssl_jax.main` (a bad input is one `Error:` line and exit 2); with
`config.active.oracle="human"` a round that waits for labels exits 4 saying which file to fill.
"""

from absl import app

from ssl_jax import main as command
from ssl_jax.discover.rounds import run_active_learning


def main(argv: list[str]) -> None:
  command.run_command(argv, run_active_learning)


if __name__ == "__main__":
  app.run(main, flags_parser=command._parse_flags)

"""Command-line entry point.

  python -m ssl_jax.main --config configs/simclr_digits.py --workdir /tmp/simclr_digits \
      [--config.total_steps=300 --config.optim.learning_rate=1e-3 ...]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging

from ssl_jax import train
from ssl_jax.config_file import define_config_flag
from ssl_jax.discover.oracle import AwaitingLabels
from ssl_jax.errors import UserError
from ssl_jax.interrupts import TrainingInterrupted

_CONFIG = define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.")
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Multi-process run (TPU pod slice, multi-node GPU): call "
  "jax.distributed.initialize(), which reads the cluster from the environment.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "With --distributed: host:port of process 0's coordinator, when the cluster is not detected "
  "from the environment (SLURM, Open MPI and TPU pods are); needs --num_processes and "
  "--process_id.",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --coordinator_address.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --coordinator_address: 0, 1, ...")
_REEVALUATE = flags.DEFINE_bool(
  "reevaluate",
  False,
  "Evaluate a finished run again (otherwise re-running it only reports its results).",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  run_command(
    argv,
    lambda config, workdir: train.train_and_evaluate(config, workdir, reevaluate=_REEVALUATE.value),
  )


def run_command(argv: list[str], entry: Callable[[ml_collections.ConfigDict, str], Any]) -> None:
  """Runs `entry(config, workdir)` with the command line's outcomes: a UserError is one
  `Error:` line and exit 2; an interrupt or a stop for input its message and exit code."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    # Orbax logs every checkpoint step at INFO; the progress line says what matters.
    logging.set_verbosity(logging.WARNING)
  if _DISTRIBUTED.value:
    initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  try:
    entry(_CONFIG.value, _WORKDIR.value)
  except UserError as error:
    # Anticipated: a bad config, data, workdir or checkpoint. One line, no traceback.
    print("Error: " + " ".join(str(error).split()), file=sys.stderr, flush=True)
    if jax.process_count() > 1:
      # The other processes may wait at a barrier this one never reaches: leave without the
      # distributed shutdown barrier (which would hold this process for minutes); theirs
      # stop when the coordination service misses this one's heartbeat.
      os._exit(2)
    sys.exit(2)
  except (TrainingInterrupted, AwaitingLabels) as stopped:
    print(str(stopped), file=sys.stderr)
    sys.exit(stopped.exit_code)
  except KeyboardInterrupt:
    # Ctrl-C outside the train loop (reading data, compiling, the final evaluation): the
    # checkpoints on disk are complete.
    print("Interrupted by Ctrl-C; the checkpoints already saved are intact.", file=sys.stderr)
    sys.exit(130)
  except train.NonFiniteLossError as error:
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(3)


def initialize_distributed(
  coordinator: str | None, num_processes: int | None, process_id: int | None
) -> None:
  """`jax.distributed.initialize`, from the environment or from the three flags (all three, or
  none: a partial set is one `Error:` line)."""
  given = {"coordinator_address": coordinator, "num_processes": num_processes}
  missing = [f"--{k}" for k, v in {**given, "process_id": process_id}.items() if v is None]
  if 0 < len(missing) < 3:
    print(
      "Error: --coordinator_address, --num_processes and --process_id go together; missing "
      + ", ".join(missing)
      + ".",
      file=sys.stderr,
    )
    sys.exit(2)
  if num_processes is not None and not 0 <= process_id < num_processes:
    print(
      f"Error: --process_id={process_id} must lie in [0, --num_processes={num_processes}).",
      file=sys.stderr,
    )
    sys.exit(2)
  jax.distributed.initialize(coordinator, num_processes, process_id)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad --config override (a key the config does not have, a
  value of the wrong type) as one `Error:` line and exit code 2 instead of a traceback."""
  try:
    remaining = flags.FLAGS(argv)
    _check_config_file()
    return remaining
  except SyntaxError as error:  # the config file does not parse
    print(f"Error: --config={error.filename!r} line {error.lineno}: {error.msg}.", file=sys.stderr)
    sys.exit(2)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
    cause = error
    while cause.args and isinstance(cause.args[0], Exception):  # AttributeError(KeyError(...))
      cause = cause.args[0]
    message = str(cause.args[0]) if cause.args else type(error).__name__
    if isinstance(error, (AttributeError, KeyError)):  # ml_collections: "'key'\nDid you mean..."
      message = "a --config override names a key the config does not have: " + message
    print("Error: " + " ".join(message.replace("\\n", " ").split()), file=sys.stderr)
    sys.exit(2)


def _check_config_file() -> None:
  """ml_collections defers a missing config file's error to the first use of --config: here it
  is one `Error:` line (an error raised by the file's own code keeps its traceback: it is the
  user's code)."""
  if isinstance(_CONFIG.value, ml_collections.ConfigDict):
    return
  path = flags.FLAGS["config"].serialize().split("=", 1)[-1]
  if not os.path.isfile(path):
    print(
      f"Error: --config={path!r} does not exist; give a file like configs/simclr_digits.py.",
      file=sys.stderr,
    )
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)

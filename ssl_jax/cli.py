"""What every command-line entry point shares: the --config / --workdir / distributed flags, the
flag parser that turns a bad override into one `Error:` line, the distributed start-up (with a
deadline), and the mapping from how a run ended to its exit code (`errors.RunEnded`).

An entry point (`ssl_jax.main`, `ssl_jax.active.main`) defines its flags with `define_flags`,
passing the function that fills its schema's defaults, and runs `app.run(main,
flags_parser=parse_flags)` with `main` calling `run_command`. Nothing imports an entry point.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging

from ssl_jax.config_file import FillDefaults, define_config_flag
from ssl_jax.errors import RunEnded

# A coordinator that nobody answers fails after this long (seconds) unless the user sets
# --distributed_timeout: long enough for a cluster's processes to start at different times.
DEFAULT_DISTRIBUTED_TIMEOUT = 120


@dataclasses.dataclass(frozen=True)
class Flags:
  """The shared flags of an entry point (absl holders)."""

  config: flags.FlagHolder
  workdir: flags.FlagHolder
  distributed: flags.FlagHolder
  coordinator: flags.FlagHolder
  num_processes: flags.FlagHolder
  process_id: flags.FlagHolder
  timeout: flags.FlagHolder


_DEFINED: list[Flags] = []


def define_flags(fill_defaults: FillDefaults) -> Flags:
  """Defines --config (its defaults filled by `fill_defaults`), --workdir and the distributed
  flags; both are required."""
  defined = Flags(
    config=define_config_flag(fill_defaults),
    workdir=flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results."),
    distributed=flags.DEFINE_bool(
      "distributed",
      False,
      "Multi-process run (TPU pod slice, multi-node GPU): call "
      "jax.distributed.initialize(), which reads the cluster from the environment.",
    ),
    coordinator=flags.DEFINE_string(
      "coordinator_address",
      None,
      "With --distributed: host:port of process 0's coordinator, when the cluster is not "
      "detected from the environment (SLURM, Open MPI and TPU pods are); needs "
      "--num_processes and --process_id.",
    ),
    num_processes=flags.DEFINE_integer("num_processes", None, "With --coordinator_address."),
    process_id=flags.DEFINE_integer("process_id", None, "With --coordinator_address: 0, 1, ..."),
    timeout=flags.DEFINE_integer(
      "distributed_timeout",
      DEFAULT_DISTRIBUTED_TIMEOUT,
      "With --distributed: seconds to wait for the coordinator and every process to join "
      "before giving up with an Error line.",
      lower_bound=1,
    ),
  )
  flags.mark_flags_as_required(["config", "workdir"])
  _DEFINED.append(defined)
  return defined


def run_command(
  argv: list[str], defined: Flags, entry: Callable[[ml_collections.ConfigDict, str], Any]
) -> None:
  """Runs `entry(config, workdir)` with the command line's outcomes: a `RunEnded` prints its
  report and exits with its code (a UserError: one `Error:` line, exit 2)."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    # Orbax logs every checkpoint step at INFO; the progress line says what matters.
    logging.set_verbosity(logging.WARNING)
  if defined.distributed.value:
    initialize_distributed(
      defined.coordinator.value,
      defined.num_processes.value,
      defined.process_id.value,
      defined.timeout.value,
    )
  try:
    entry(defined.config.value, defined.workdir.value)
  except RunEnded as ended:
    print(ended.report(), file=sys.stderr, flush=True)
    _exit(ended.exit_code)
  except KeyboardInterrupt:
    # Ctrl-C outside the train loop (reading data, compiling, the final evaluation): the
    # checkpoints on disk are complete.
    print("Interrupted by Ctrl-C; the checkpoints already saved are intact.", file=sys.stderr)
    sys.exit(130)


def _exit(code: int) -> None:
  if code == 2 and jax.process_count() > 1:
    # The other processes may wait at a barrier this one never reaches: leave without the
    # distributed shutdown barrier (which would hold this process for minutes); theirs stop
    # when the coordination service misses this one's heartbeat.
    os._exit(2)
  sys.exit(code)


def _error(message: str) -> None:
  print(f"Error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def initialize_distributed(
  coordinator: str | None,
  num_processes: int | None,
  process_id: int | None,
  timeout: int = DEFAULT_DISTRIBUTED_TIMEOUT,
) -> None:
  """`jax.distributed.initialize`, from the environment or from the three flags (all three, or
  none: a partial set is one `Error:` line). A coordinator that does not answer, or processes
  that do not all join, within `timeout` seconds end with one `Error:` line naming the address
  and exit 2 (JAX itself would abort minutes later with a C++ stack trace)."""
  given = {"coordinator_address": coordinator, "num_processes": num_processes}
  missing = [f"--{k}" for k, v in {**given, "process_id": process_id}.items() if v is None]
  if 0 < len(missing) < 3:
    _error(
      "--coordinator_address, --num_processes and --process_id go together; missing "
      + ", ".join(missing)
      + "."
    )
  if num_processes is not None and not 0 <= process_id < num_processes:
    _error(f"--process_id={process_id} must lie in [0, --num_processes={num_processes}).")
  where = coordinator or "the coordinator found in the environment"
  if coordinator and process_id:
    wait_for_coordinator(coordinator, timeout)
  # A watchdog: JAX's own deadline (set a little later) ends in a C++ abort; this ends first.
  watchdog = threading.Timer(
    timeout,
    lambda: (
      print(
        f"Error: --coordinator_address={where}: not every one of the processes joined within "
        f"--distributed_timeout={timeout} s; start all of them with the same address and "
        "--num_processes, or raise --distributed_timeout.",
        file=sys.stderr,
        flush=True,
      ),
      os._exit(2),
    ),
  )
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(
      coordinator, num_processes, process_id, initialization_timeout=timeout + 30
    )
  finally:
    watchdog.cancel()


def wait_for_coordinator(address: str, timeout: float) -> None:
  """Polls a TCP connection to `address` (host:port) until it answers; one `Error:` line and
  exit 2 when nothing does within `timeout` seconds or the address is malformed."""
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    _error(f"--coordinator_address={address!r} is not host:port.")
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
        return
    except OSError as error:
      if time.monotonic() >= deadline:
        _error(
          f"--coordinator_address={address}: no coordinator answered within "
          f"--distributed_timeout={timeout:g} s ({error.strerror or error}); start process 0 "
          "first, check the host and port, or raise --distributed_timeout."
        )
      time.sleep(0.5)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad --config override (a key the config does not have, a
  value of the wrong type) as one `Error:` line and exit code 2 instead of a traceback."""
  try:
    remaining = flags.FLAGS(argv)
    for defined in _DEFINED:
      _check_config_file(defined.config)
    return remaining
  except SyntaxError as error:  # the config file does not parse
    _error(f"--config={error.filename!r} line {error.lineno}: {error.msg}.")
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
    cause = error
    while cause.args and isinstance(cause.args[0], Exception):  # AttributeError(KeyError(...))
      cause = cause.args[0]
    message = str(cause.args[0]) if cause.args else type(error).__name__
    if isinstance(error, (AttributeError, KeyError)):  # ml_collections: "'key'\nDid you mean..."
      message = "a --config override names a key the config does not have: " + message
    _error(" ".join(message.replace("\\n", " ").split()))


def _check_config_file(config: flags.FlagHolder) -> None:
  """ml_collections defers a missing config file's error to the first use of --config: here it
  is one `Error:` line (an error raised by the file's own code keeps its traceback: it is the
  user's code)."""
  if isinstance(config.value, ml_collections.ConfigDict):
    return
  path = flags.FLAGS["config"].serialize().split("=", 1)[-1]
  if not os.path.isfile(path):
    _error(f"--config={path!r} does not exist; give a file like configs/simclr_digits.py.")

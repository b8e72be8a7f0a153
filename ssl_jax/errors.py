"""How a run ends short of finishing: every exception that ends a command with its own exit
code derives from `RunEnded`, and the entry points (`ssl_jax.cli`) print its `report()` and exit
with its `exit_code`, without a traceback.

  2   UserError and its kinds: a mistake the user can fix, one `Error:` line
  3   NonFiniteLossError: the loss became NaN or Inf
  4   AwaitingLabels (active learning with a human oracle): a round waits for labels
  128 + signal  TrainingInterrupted: SIGTERM / Ctrl-C, a checkpoint saved

Everything else (a bug, an out-of-memory) keeps its traceback. Each UserError class also
derives from the builtin its callers may already expect (ValueError, FileNotFoundError), so code
that catches those keeps working.
"""

from __future__ import annotations


class RunEnded(Exception):
  """A run stopped for a reason the command reports in a line and an exit code."""

  exit_code: int = 1

  def report(self) -> str:
    """What the command prints to stderr (one line unless the message has more)."""
    return str(self)


class UserError(RunEnded):
  """An anticipated mistake in the config, the data, the workdir or a checkpoint. The message
  names the bad value and what would be valid; the command prints it as one `Error:` line."""

  exit_code = 2

  def report(self) -> str:
    return "Error: " + " ".join(str(self).split())


class NonFiniteLossError(RunEnded, FloatingPointError):
  """The loss became NaN or Inf; the run stopped without saving the bad state."""

  exit_code = 3

  def report(self) -> str:
    return f"Error: {self}"


class ConfigError(UserError, ValueError):
  """A config names something that does not exist or sets a value that is not accepted."""


class DataError(UserError, ValueError):
  """The data a config points to cannot be used (unreadable, empty, inconsistent)."""


class MissingInputError(UserError, FileNotFoundError):
  """A file or directory the config names does not exist."""


class WorkdirError(UserError):
  """The workdir cannot be used: another live run holds it, it is a file, it is read-only."""


class ResumeError(UserError):
  """The workdir holds a run that this config would not continue faithfully."""


class CheckpointError(UserError):
  """No checkpoint can be read: all are damaged, or one cannot be written."""


class CheckpointMismatchError(CheckpointError, ValueError):
  """A checkpoint exists but holds a differently shaped train state (a genuine config
  difference, as opposed to damage)."""

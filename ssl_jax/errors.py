"""The errors a user can cause and fix: `main` prints each as one `Error:` line and exits 2.

Everything else (a bug, an out-of-memory) keeps its traceback. Each class also derives from
the builtin its callers may already expect (ValueError, FileNotFoundError), so code that
catches those keeps working.
"""

from __future__ import annotations


class UserError(Exception):
  """An anticipated mistake in the config, the data, the workdir or a checkpoint. The message
  names the bad value and what would be valid; `main` adds no traceback."""


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

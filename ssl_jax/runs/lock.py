"""One run per workdir: a lock file naming the live run's host and pid, taken atomically.

The lock is `<workdir>/lock`, a small JSON file. It is created complete (written to a private
file, then hard-linked into place, which fails if a lock is already there), so a reader never
sees a half-written holder. The live run touches the lock every `HEARTBEAT_SECONDS`.

A lock whose process is gone is taken over with a warning: on this host when its pid is not
alive (or alive but started later: a reused pid); from another host (a job restarted on a new
machine) when its heartbeat is older than `STALE_AFTER_SECONDS`. A fresh lock of another host
is refused with the hint to delete it if that run is dead. In a multi-process run only process
0 takes the lock, and every process learns the outcome, so they all stop or all go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import threading
import time
from typing import Any

import jax
import numpy as np

from ssl_jax.errors import WorkdirError

LOCK_FILE = "lock"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 600.0  # 20 missed heartbeats


def _process_start(pid: int) -> str | None:
  """The kernel's start time of `pid` (Linux /proc; None elsewhere): tells a reused pid."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(holder: dict[str, Any]) -> bool:
  """Whether the process named by a lock on this host still runs."""
  pid = int(holder.get("pid", -1))
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's live process
  started = holder.get("process_start")
  return started is None or _process_start(pid) in (None, started)


def _describe(holder: dict[str, Any]) -> str:
  return (
    f"pid {holder.get('pid')} on host {holder.get('host')!r}, started {holder.get('started', '?')}"
  )


def check_workdir_path(workdir: str) -> None:
  """A WorkdirError for a workdir that cannot be one (a file, an unwritable place)."""
  if not workdir:
    raise WorkdirError("--workdir is empty; give the directory for checkpoints and metrics.")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir!r} is a file, not a directory.")
  existing = workdir
  while existing and not os.path.exists(existing):
    existing = os.path.dirname(existing.rstrip(os.sep)) or "."
  if not os.path.isdir(existing):
    raise WorkdirError(f"--workdir={workdir!r}: {existing!r} is a file, not a directory.")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise WorkdirError(f"--workdir={workdir!r}: {existing!r} is not writable by this user.")


class WorkdirLock:
  """`with WorkdirLock(workdir):` holds the workdir for the run (creating it if needed).

  `created` says whether this run made the directory, so a run refused before it wrote
  anything can leave the disk as it found it (`discard`)."""

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILE)
    self.created = False
    self.held = False
    self._stop_heartbeat = threading.Event()

  def __enter__(self) -> WorkdirLock:
    check_workdir_path(self.workdir)
    failure = ""
    if jax.process_index() == 0:
      try:
        self._acquire()
      except WorkdirError as error:
        failure = str(error)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      refused = multihost_utils.broadcast_one_to_all(np.int32(bool(failure)))
      if int(refused) and not failure:
        failure = f"process 0 could not lock {self.workdir} (its error names the holder)."
    if failure:
      raise WorkdirError(failure)
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def _holder(self) -> dict[str, Any]:
    return {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "process_start": _process_start(os.getpid()),
      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "processes": jax.process_count(),
      "command": " ".join(sys.argv),
    }

  def _acquire(self) -> None:
    self.created = not os.path.isdir(self.workdir)
    try:
      os.makedirs(self.workdir, exist_ok=True)
      private = f"{self.path}.{socket.gethostname()}.{os.getpid()}"
      with open(private, "w") as f:
        json.dump(self._holder(), f)
        f.flush()
        os.fsync(f.fileno())
    except OSError as error:
      raise WorkdirError(
        f"--workdir={self.workdir!r} cannot be written ({error.strerror or error}); choose a "
        "writable directory."
      ) from error
    try:
      for _ in range(3):
        try:
          os.link(private, self.path)  # atomic: fails if a lock is there
          self.held = True
          threading.Thread(target=self._heartbeat, daemon=True, name="workdir-lock").start()
          return
        except FileExistsError:
          self._take_over_if_stale()
      raise WorkdirError(f"Could not take the lock {self.path}: other runs keep taking it.")
    finally:
      with contextlib.suppress(OSError):
        os.remove(private)

  def _heartbeat(self) -> None:
    """Touches the lock while the run lives, so another host can tell a dead holder."""
    while not self._stop_heartbeat.wait(HEARTBEAT_SECONDS):
      with contextlib.suppress(OSError):
        os.utime(self.path)

  def _take_over_if_stale(self) -> None:
    """Removes a lock whose holder is dead (with a warning); raises for a live one."""
    try:
      with open(self.path) as f:
        holder = json.load(f)
    except FileNotFoundError:
      return  # released meanwhile: try again
    except (OSError, ValueError):
      holder = {}
    same_host = holder.get("host") == socket.gethostname()
    try:
      silent = time.time() - os.path.getmtime(self.path)
    except OSError:
      return  # released meanwhile
    if holder and not same_host and silent < STALE_AFTER_SECONDS:
      raise WorkdirError(
        f"{self.workdir} is in use by another run ({_describe(holder)}): its lock is "
        f"{self.path}. If that run is no longer alive, delete the lock and re-run."
      )
    if holder and same_host and _alive(holder):
      raise WorkdirError(
        f"{self.workdir} is in use by another run ({_describe(holder)}); wait for it to "
        "finish, or stop it, or use another --workdir."
      )
    stale = f"{self.path}.stale.{os.getpid()}"
    try:
      os.rename(self.path, stale)  # only one contender wins the rename
    except FileNotFoundError:
      return
    os.remove(stale)
    what = _describe(holder) if holder else "an unreadable lock"
    if holder and not same_host:
      what += f", silent for {silent / 60:.0f} minutes"
    print(f"Warning: took over the lock of {self.workdir} from a run that is gone ({what}).")

  def release(self) -> None:
    """Removes the lock if this process holds it."""
    if not self.held:
      return
    self.held = False
    self._stop_heartbeat.set()
    with contextlib.suppress(OSError, ValueError):
      with open(self.path) as f:
        holder = json.load(f)
      if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        os.remove(self.path)

  def keep(self) -> None:
    """The run has written its record: from now on the workdir is kept whatever happens."""
    self.created = False

  def discard(self) -> None:
    """Removes the workdir if this run created it (called when it is refused before writing
    anything of its own), so a refused run leaves no trace."""
    self.release()
    if self.created and jax.process_index() == 0:
      shutil.rmtree(self.workdir, ignore_errors=True)

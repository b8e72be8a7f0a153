"""SIGTERM (a scheduler's preemption) and Ctrl-C (SIGINT) become a request the train loop checks
between steps (agreed by every process of a multi-process run): it saves a checkpoint and
stops, and the same command resumes bitwise. A second
Ctrl-C exits at once (the checkpoints already on disk are complete: Orbax renames a step into
place only when it is written)."""

from __future__ import annotations

import os
import signal
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils

from ssl_jax.errors import RunEnded

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(RunEnded):
  """A stop signal arrived; a checkpoint of `step` was saved and the same command resumes from
  it. `exit_code` is the shell's 128 + signal number (143 for SIGTERM, 130 for Ctrl-C)."""

  def __init__(self, step: int, workdir: str, signum: int = signal.SIGTERM):
    name = signal.Signals(signum).name
    super().__init__(
      f"Interrupted by {name} at step {step}; saved a checkpoint in "
      f"{workdir}/checkpoints. Re-run the same command to resume."
    )
    self.step = step
    self.exit_code = 128 + int(signum)


class StopSignals:
  """`with StopSignals() as stop:` ... `stop.requested` is the first signal's number (or 0)."""

  def __init__(self):
    self.requested = 0
    self._previous: dict[int, object] = {}

  def __enter__(self) -> StopSignals:
    for signum in SIGNALS:
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not the main thread (a notebook worker): no handlers
        break
    return self

  def _handle(self, signum, frame) -> None:
    del frame
    if self.requested and signum == signal.SIGINT:
      print(
        "Second Ctrl-C: exiting now without saving; the checkpoints already on disk are intact.",
        file=sys.stderr,
        flush=True,
      )
      os._exit(128 + signal.SIGINT)
    if not self.requested:
      self.requested = signum
      if signum == signal.SIGINT:
        print(
          "Ctrl-C: saving a checkpoint after this step (Ctrl-C again to exit at once).",
          file=sys.stderr,
          flush=True,
        )

  def __exit__(self, *exc) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)


class AgreedStop:
  """`agreed(step)`: whether every process stops after `step`. A signal reaches one process (a
  preempted host) or all of them at slightly different steps; the processes exchange their
  requests (one int each) after every `every`-th step, so all stop after the same step and
  save the same checkpoint, and no process waits in a collective for one that left. A single
  process stops right after the step its signal arrived in.
  """

  def __init__(self, signals: StopSignals, every: int = 10):
    self.signals, self.every = signals, every
    self.signum = 0  # the agreed signal, once every process knows it

  def __call__(self, step: int) -> bool:
    if jax.process_count() == 1:
      self.signum = self.signals.requested
    elif step % self.every == 0:
      requests = multihost_utils.process_allgather(np.int32(self.signals.requested))
      self.signum = int(np.max(requests))
    return bool(self.signum)

"""Progress with an ETA for work that takes more than a few seconds.

  with Progress("linear probe", total=3) as progress:
    for feature_set in feature_sets:
      ...
      progress.advance()

prints `linear probe: 2/3 (67%) | 0m12s elapsed | ETA 0m06s` to stderr, rewritten in place on a
terminal and as a new line at most every `interval` seconds in a log (plus a last line when
done). Nothing is printed for work that ends within `delay` seconds, so fast evaluations stay
quiet, nor by any process but the first of a multi-process run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from ssl_jax.metrics import format_duration

# Work that ends sooner prints nothing (a module setting, so a test or a notebook can lower it).
DEFAULT_DELAY = 3.0


def _first_process() -> bool:
  import jax

  return jax.process_index() == 0


class Progress:
  """Counts `total` units of work and reports the rate and time left.

  `delay`: seconds of quiet before the first report (default DEFAULT_DELAY); `interval`: the
  least seconds between two reports in a log (on a terminal the line is rewritten every 0.5 s).
  """

  def __init__(
    self,
    label: str,
    total: int,
    stream: TextIO | None = None,
    delay: float | None = None,
    interval: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    enabled: bool | None = None,
    rewrite: bool | None = None,
  ):
    self.label, self.total, self.done = label, max(int(total), 0), 0
    self.stream = stream if stream is not None else sys.stderr
    self.delay = DEFAULT_DELAY if delay is None else delay
    self.clock = clock
    # rewrite=False: a new line per report even on a terminal (work that prints lines of its
    # own between reports, like an experiment's runs).
    isatty = bool(getattr(self.stream, "isatty", lambda: False)())
    self.tty = isatty if rewrite is None else rewrite and isatty
    # On a terminal the line is cheap to rewrite; in a log every line stays, so fewer.
    self.interval = 0.5 if self.tty else interval
    self.enabled = _first_process() if enabled is None else enabled
    self.start = clock()
    self.last_shown: float | None = None

  def line(self) -> str:
    """`<label>: done/total (pct) | elapsed | ETA` (the ETA from the mean time per unit)."""
    elapsed = self.clock() - self.start
    parts = [f"{self.label}: {self.done}/{self.total}"]
    if self.total:
      parts[0] += f" ({100 * self.done / self.total:.0f}%)"
    parts.append(f"{format_duration(elapsed)} elapsed")
    if self.done >= self.total:
      parts.append("done")
    elif self.done:
      parts.append(f"ETA {format_duration(elapsed / self.done * (self.total - self.done))}")
    else:
      parts.append("ETA ?")
    return " | ".join(parts)

  def advance(self, units: int = 1) -> None:
    self.done = min(self.done + units, self.total)
    now = self.clock()
    if not self.enabled or now - self.start < self.delay:
      return
    if self.last_shown is None or now - self.last_shown >= self.interval or self.done >= self.total:
      self._show(final=self.done >= self.total)
      self.last_shown = now

  def _show(self, final: bool) -> None:
    if self.tty:
      self.stream.write("\r\033[K" + self.line() + ("\n" if final else ""))
    else:
      self.stream.write(self.line() + "\n")
    self.stream.flush()

  def close(self) -> None:
    """Ends an unfinished line on a terminal (work stopped early or was shown in place)."""
    if self.enabled and self.tty and self.last_shown is not None and self.done < self.total:
      self.stream.write("\n")
      self.stream.flush()

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

"""Timing two frameworks fairly in one process: their steps alternate, round after round."""

from __future__ import annotations

import time
from collections.abc import Callable


def time_interleaved(steps: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
  """Seconds per call of each step, run in turn round after round (after two warm-up calls
  each), so a change in the machine's load touches both frameworks alike."""
  for step in steps.values():
    step()
    step()
  times = {name: [] for name in steps}
  for _ in range(rounds):
    for name, step in steps.items():
      start = time.perf_counter()
      step()
      times[name].append(time.perf_counter() - start)
  return times

"""Every logged metric of one or more runs over steps, read from their metrics.jsonl.

One panel per metric (loss first, then the learning rate, then the rest in name order: task
metrics, throughput, periodic evaluations such as "linear_probe/simclr/accuracy_all"), one
line per run, the runs named in a legend. Evaluations logged every few thousand steps get
markers, so a curve of three points still reads as three points.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ssl_jax.errors import DataError, MissingInputError
from ssl_jax.plot.figure_file import panel_grid

METRICS_FILE = "metrics.jsonl"
# Throughput twice over (steps and examples per second) says nothing new: examples/s is kept.
REDUNDANT = ("steps_per_second",)
Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def read_curves(workdir: str) -> Curves:
  """{metric: (steps, values)} of a workdir's metrics.jsonl, in step order. A torn last line
  (a run killed mid-write) is skipped; a file with no record is an error naming it."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.isfile(path):
    raise MissingInputError(
      f"{workdir!r} has no {METRICS_FILE}: pass the workdir of a run that has logged a step."
    )
  points: dict[str, list[tuple[int, float]]] = {}
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if not isinstance(record, dict) or "step" not in record:
        continue
      step = int(record["step"])
      for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
          points.setdefault(key, []).append((step, float(value)))
  if not points:
    raise DataError(f"{path} holds no logged metric.")
  curves = {}
  for key, pairs in points.items():
    pairs.sort(key=lambda pair: pair[0])
    curves[key] = (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
  return curves


def panel_order(keys: Sequence[str]) -> list[str]:
  """Loss first, the learning rate second, the rest by name (throughput's duplicate left out)."""
  first = {"loss": 0, "learning_rate": 1}
  kept = [key for key in dict.fromkeys(keys) if key not in REDUNDANT]
  return sorted(kept, key=lambda key: (first.get(key, 2), key))


def run_names(workdirs: Sequence[str]) -> list[str]:
  """Legend names: each workdir's last path component, or its last two where those repeat."""
  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  if len(set(names)) == len(names):
    return names
  return [os.path.join(*os.path.normpath(os.path.abspath(w)).split(os.sep)[-2:]) for w in workdirs]


def plot_runs(
  workdirs: Sequence[str],
  metrics: Sequence[str] = (),
  labels: Sequence[str] = (),
  columns: int = 3,
) -> Figure:
  """The curves of `workdirs` overlaid, one panel per metric (`metrics`: a subset; each must
  be logged by at least one run). `labels` name the runs in the legend (default: their
  directories)."""
  if not workdirs:
    raise ValueError("Pass at least one workdir.")
  if labels and len(labels) != len(workdirs):
    raise ValueError(f"{len(labels)} labels for {len(workdirs)} workdirs: give one per workdir.")
  runs = {w: read_curves(w) for w in workdirs}
  logged = panel_order([key for curves in runs.values() for key in curves])
  if metrics:
    unknown = [m for m in metrics if m not in logged]
    if unknown:
      raise DataError(f"No run logged {unknown}; logged metrics: {logged}.")
    logged = list(metrics)
  names = list(labels) or run_names(workdirs)
  colors = run_colors(len(names))
  figure, axes = panel_grid(len(logged), columns)
  for key, ax in zip(logged, axes):
    for name, color, curves in zip(names, colors, runs.values()):
      if key not in curves:
        continue  # the run keeps its colour in every panel, whichever runs are missing here
      steps, values = curves[key]
      marker = "o" if len(steps) <= 12 else None
      ax.plot(steps, values, color=color, marker=marker, markersize=3, label=name)
    ax.set_title(key, fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if key == "learning_rate":
      ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
  # Every run in the legend, also those that did not log the first panel's metric.
  handles = [Line2D([], [], color=color, label=name) for name, color in zip(names, colors)]
  axes[0].legend(handles=handles, fontsize=8)
  return figure


def run_colors(count: int) -> list:
  """One colour per run, the same in every panel: matplotlib's ten-colour cycle, or evenly
  spaced colours of a colormap beyond ten runs."""
  if count <= 10:
    return [f"C{i}" for i in range(count)]
  from matplotlib import colormaps

  return [colormaps["turbo"](i / (count - 1)) for i in range(count)]

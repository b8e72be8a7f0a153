"""Where a run reports: metrics.jsonl, TensorBoard (tensorboardX), the console, JSON files."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ssl_jax.files import write_json, write_text  # noqa: F401  (write_json: the metrics' callers)


def format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  minutes, seconds = divmod(seconds, 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def drop_records_after(path: str, step: int) -> int:
  """Removes the records of steps after `step` from a metrics.jsonl (logged after the
  checkpoint a run resumes from, they would repeat); returns how many were dropped. A torn
  last line (a kill mid-write) goes too."""
  if not os.path.exists(path):
    return 0
  kept, dropped = [], 0
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        dropped += 1
        continue
      if int(record.get("step", 0)) <= step:
        kept.append(line if line.endswith("\n") else line + "\n")
      else:
        dropped += 1
  if dropped:
    write_text(path, "".join(kept))
  return dropped


class MetricWriter:
  """Appends one JSON object per logged step, mirrors scalars to TensorBoard, prints progress."""

  def __init__(self, workdir: str, total_steps: int, stream=sys.stdout):
    from tensorboardX import SummaryWriter  # Heavy import, only where a run writes metrics.

    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self.total_steps = total_steps
    self.stream = stream
    self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    with open(self.jsonl_path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for key, value in scalars.items():
      self.tensorboard.add_scalar(key, float(value), int(step))
    self.tensorboard.flush()

  def progress(self, step: int, scalars: Mapping[str, float], steps_per_second: float) -> None:
    """step 120/1000 | loss 3.2104 | <task metrics> | lr 1.20e-03 | 2345 ex/s | ETA 1m05s"""
    remaining = (self.total_steps - step) / steps_per_second if steps_per_second > 0 else math.nan
    parts = [f"step {step}/{self.total_steps}"]
    shown = [
      k for k in scalars if k not in ("learning_rate", "examples_per_second", "steps_per_second")
    ]
    for key in sorted(shown, key=lambda k: (k != "loss", k)):  # Loss first.
      parts.append(f"{key} {scalars[key]:.4f}")
    parts.append(f"lr {scalars.get('learning_rate', math.nan):.2e}")
    parts.append(f"{scalars.get('examples_per_second', math.nan):.0f} ex/s")
    parts.append(f"ETA {format_duration(remaining) if math.isfinite(remaining) else '?'}")
    print(" | ".join(parts), file=self.stream, flush=True)

  def close(self) -> None:
    self.tensorboard.close()


class Throughput:
  """Steps and examples per second between two reads of the host clock."""

  def __init__(self, step: int):
    self.step, self.time = step, time.perf_counter()

  def update(self, step: int, batch_size: int) -> tuple[float, float]:
    now = time.perf_counter()
    elapsed = max(now - self.time, 1e-9)
    steps_per_second = (step - self.step) / elapsed
    self.step, self.time = step, now
    return steps_per_second, steps_per_second * batch_size


def format_results_table(
  results: Mapping[str, Mapping[str, Mapping[str, Any]]], corner: str = ""
) -> str:
  """Markdown table of {evaluator: {row: {column: value}}}: rows with the same name (e.g. the
  feature set "raw pixels") are merged across evaluators, one column per metric, in the order
  first seen; `corner` heads the row names.

  Values are floats, ints, text, or {"mean": m, "std": s} ("m ± s"; "m" alone when s is 0, a
  cell measured once); accuracy, precision and recall columns (0..1) print as percentages.
  """
  columns: list[str] = []
  rows: dict[str, dict[str, Any]] = {}
  for table in results.values():
    for row, values in table.items():
      rows.setdefault(row, {}).update(values)
      columns += [c for c in values if c not in columns]
  head = f"| {corner} | " if corner else "| | "
  lines = [head + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
  for name, values in rows.items():
    cells = [_format_cell(c, values.get(c)) for c in columns]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _format_cell(column: str, value: Any) -> str:
  if value is None:
    return ""
  percent = any(word in column for word in ("acc", "precision", "recall"))
  scale, digits = (100.0, 1) if percent else (1.0, 4)
  if isinstance(value, Mapping):
    mean, std = scale * value["mean"], scale * value["std"]
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"
  if isinstance(value, (bool, str)):
    return str(value)
  if isinstance(value, (int, np.integer)) and not percent:
    return f"{value:,}"
  return f"{scale * value:.{digits}f}"

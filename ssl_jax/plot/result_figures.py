"""The experiments' figures, drawn from the same JSON records their tables are rendered from.

Each function takes a record and returns a Figure; `FIGURES` names them for
`python -m ssl_jax.report` and for the experiments, which write each PNG beside its JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ssl_jax.plot.figure_file import panel_grid

FIGURES: dict[str, Callable[[Any], Figure]] = {}
BUDGET = re.compile(r"^(?:acc@)?(\d+)/class$")


def figure(name: str):
  def register(fn):
    FIGURES[name] = fn
    return fn

  return register


def _budget_columns(row: Mapping[str, Any]) -> list[tuple[str, str]]:
  """[(column, tick label)] of a row's per-class budgets in order, then "all"."""
  budgets = sorted((int(m[1]), c) for c in row if (m := BUDGET.match(c)))
  columns = [(c, str(n)) for n, c in budgets]
  columns += [(c, "all") for c in row if c in ("all", "acc@all")]
  return columns


def _mean_std(cell: Any) -> tuple[float, float]:
  return (cell["mean"], cell["std"]) if isinstance(cell, Mapping) else (float(cell), 0.0)


@figure("vision_zoo")
def vision_zoo(record: Mapping[str, Any]) -> Figure:
  """Linear-probe accuracy by method (bars) at each label budget (one bar per budget), the
  baseline rows hatched; whiskers are the std over label draws."""
  rows = record["rows"]
  columns = _budget_columns(next(iter(rows.values())))
  fig, [ax] = panel_grid(1, size=(13.0, 4.2))
  width = 0.8 / len(columns)
  colors = [f"C{i}" for i in range(len(columns))]
  for j, (column, tick) in enumerate(columns):
    stats = np.array([_mean_std(row[column]) for row in rows.values()]) * 100
    x = np.arange(len(rows)) + (j - (len(columns) - 1) / 2) * width
    bars = ax.bar(x, stats[:, 0], width, yerr=stats[:, 1], color=colors[j], capsize=1.5)
    bars.set_label(f"{tick} labels/class" if tick != "all" else "all labels")
    for bar, name in zip(bars, rows):
      if name.startswith(("random init", "raw pixels")):
        bar.set_hatch("//")
        bar.set_alpha(0.6)
  ax.set_xticks(np.arange(len(rows)), list(rows), rotation=30, ha="right", fontsize=8)
  ax.set_ylabel("linear probe test accuracy (%)")
  ax.set_ylim(0, 100)
  ax.grid(axis="y", alpha=0.3)
  ax.legend(fontsize=8, ncols=len(columns), loc="lower center", bbox_to_anchor=(0.5, 1.06))
  ax.set_title("Vision pretext zoo on digits (hatched: baselines)", fontsize=10, pad=28)
  return fig


def _suites(record: Mapping[str, Any], robust: bool) -> dict[str, Mapping[str, Any]]:
  return {
    suite: rows
    for suite, rows in record.items()
    if isinstance(rows, Mapping) and suite.endswith(" robustness") == robust
  }


@figure("label_efficiency")
def label_efficiency(record: Mapping[str, Any]) -> Figure:
  """Test accuracy against labels per class, one panel per suite, one line per method (a
  band of ± one std over label draws)."""
  suites = _suites(record, robust=False)
  fig, axes = panel_grid(len(suites), columns=3, size=(5.2, 3.8))
  for ax, (suite, rows) in zip(axes, suites.items()):
    columns = _budget_columns(next(iter(rows.values())))
    x = np.arange(len(columns))
    for name, row in rows.items():
      stats = np.array([_mean_std(row[c]) for c, _ in columns])
      style = "--" if name.startswith(("from scratch", "zero-shot")) else "-"
      (line,) = ax.plot(x, stats[:, 0], style, marker="o", markersize=3, label=name)
      ax.fill_between(
        x, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], alpha=0.1, color=line.get_color()
      )
    ax.set_xticks(x, [tick for _, tick in columns])
    ax.set_xlabel("labels per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(suite, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  return fig


EPS = re.compile(r"eps=([0-9.eE+-]+)$")


@figure("robustness")
def robustness(record: Mapping[str, Any]) -> Figure:
  """Accuracy against the attack budget (eps 0: clean), one panel per robustness table, one
  line per fine-tune."""
  tables = _suites(record, robust=True)
  fig, axes = panel_grid(len(tables), columns=3, size=(4.6, 3.5))
  for ax, (suite, rows) in zip(axes, tables.items()):
    for name, row in rows.items():
      points = [(0.0, row["clean acc"])]
      points += [(float(m[1]), value) for column, value in row.items() if (m := EPS.search(column))]
      eps, accuracy = zip(*points)
      ax.plot(eps, accuracy, marker="o", markersize=3, label=name)
    ax.set_xlabel("attack budget eps (0: clean)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(suite, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return fig


@figure("active_learning")
def active_learning(record: Mapping[str, Any]) -> Figure:
  """Accuracy against the number of labels (log scale), one panel per suite, one line per
  query strategy (dashed: the random baselines); dotted: every pool label."""
  suites = record["results"]
  fig, axes = panel_grid(len(suites), columns=2, size=(6.5, 4.8))
  colors = [f"C{i % 10}" for i in range(20)]
  for ax, (suite, rows) in zip(axes, suites.items()):
    for k, (strategy, row) in enumerate(rows.items()):
      budgets = sorted(int(b) for b in row)
      stats = np.array([_mean_std(row[str(b)]) for b in budgets])
      style = "--" if strategy in ("random", "stratified_random") else "-"
      color = colors[k % len(colors)]
      marker = "os^"[k // 10 % 3]
      ax.plot(budgets, stats[:, 0], style, marker=marker, markersize=3, label=strategy, color=color)
      ax.fill_between(
        budgets, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], color=color, alpha=0.08
      )
    ax.axhline(record["all_labels"][suite]["mean"], color="gray", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("labels (every pool label: dotted line)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(suite, fontsize=10)
  axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
  return fig


@figure("reward_finetuning")
def reward_finetuning(record: Mapping[str, Any]) -> Figure:
  """Train reward (top) and KL to the reference (bottom) over steps, one column per suite, one
  line per estimator."""
  suites = record["results"]
  fig = Figure(figsize=(4.5 * len(suites), 6), layout="constrained")
  axes = fig.subplots(2, len(suites), squeeze=False)
  for col, (suite, rows) in enumerate(suites.items()):
    for estimator, cell in rows.items():
      for row, key in enumerate(("reward", "kl")):
        if cell["curves"][key]:  # no KL curve at beta = 0
          axes[row, col].plot(cell["curves"]["step"], cell["curves"][key], label=estimator)
    axes[0, col].set_title(suite, fontsize=10)
    axes[0, col].set_ylabel("train reward")
    axes[1, col].set_ylabel("KL to reference")
    axes[1, col].set_xlabel("step")
    axes[0, col].legend(fontsize=7)
  return fig

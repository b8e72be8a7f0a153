"""Markdown tables from results JSON, one renderer per kind of record.

A renderer takes the record (the JSON value a docs marker points at) and returns a markdown
table. The experiments use the same renderers for the .md files they write beside their JSON,
so a table in the docs reads exactly like the experiment's own report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ssl_jax.metrics import format_results_table

Renderer = Callable[[Any], str]
TABLES: dict[str, Renderer] = {}


def table(name: str) -> Callable[[Renderer], Renderer]:
  """Registers a renderer under `name` (the `kind=` of a docs marker)."""

  def register(renderer: Renderer) -> Renderer:
    TABLES[name] = renderer
    return renderer

  return register


def natural_key(text: str) -> tuple:
  """ "acc@5/class" before "acc@10/class" before "acc@all": numbers compared as numbers."""
  return tuple(
    (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
  )


def mean_std(cell: Mapping[str, float], digits: int = 1) -> str:
  """ "m ± s", or "m" when the std is 0 (a cell measured once)."""
  if not cell["std"]:
    return f"{cell['mean']:.{digits}f}"
  return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


@table("results")
def results_table(evals: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
  """{evaluator: {row: {column: value}}} (a run's results.json "evals"), as the run prints it:
  rows of the same name (a feature set such as "raw pixels") merged across evaluators."""
  return format_results_table(evals, corner="features")


@table("rows")
def rows_table(record: Mapping[str, Any]) -> str:
  """{"rows": {row: {column: value}}}: one table (the vision zoo's JSON; text cells as they
  are)."""
  return format_results_table({"rows": record["rows"]})


@table("label_efficiency")
def label_efficiency_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
  """{method: {"<n>/class" | "all": {mean, std} (%), "trainable params", "task weights bytes"}}."""
  extra = ("trainable params", "task weights bytes")
  columns = [c for c in next(iter(rows.values())) if c not in extra]
  columns.sort(key=lambda c: (c == "all", natural_key(c)))
  lines = [
    "| method | " + " | ".join(columns) + " | trainable params | task weights on disk |",
    "|---" * (len(columns) + 3) + "|",
  ]
  for name, row in rows.items():
    cells = [mean_std(row[column]) for column in columns]
    size = f"{row['task weights bytes'] / 1024:,.0f} KiB" if "task weights bytes" in row else "none"
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['trainable params']:,} | {size} |")
  return "\n".join(lines)


@table("robustness")
def robustness_table(rows: Mapping[str, Mapping[str, float]]) -> str:
  """{fine-tune: {"clean acc", "<attack> acc @ <norm> eps=<e>"...} (%)}."""
  columns = list(next(iter(rows.values())))
  lines = ["| fine-tune | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
  lines += [
    f"| {name} | " + " | ".join(f"{row[c]:.1f}" for c in columns) + " |"
    for name, row in rows.items()
  ]
  return "\n".join(lines)


@table("active_learning")
def active_learning_table(record: Mapping[str, Any]) -> str:
  """experiments/active_learning.py's record: per suite, accuracy by number of labels for each
  strategy, and the labels each needs to reach 90% / 95% of its suite's target."""
  lines = []
  for suite, rows in record["results"].items():
    budgets = sorted({int(b) for row in rows.values() for b in row})
    full = record["all_labels"][suite]
    lines += [
      f"### {suite}: test accuracy (%) by number of labels ({record['seeds']} seeds)",
      "",
      "| strategy | " + " | ".join(str(b) for b in budgets) + " | to 90% | to 95% |",
      "|---" * (len(budgets) + 3) + "|",
    ]
    for strategy, row in rows.items():
      cells = [mean_std(row[str(b)]) if str(b) in row else "" for b in budgets]
      reach = record["labels_to_reach"][suite][strategy]
      cells += [str(reach[k] or f">{budgets[-1]}") for k in ("90%", "95%")]
      lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += ["", f"Every pool label ({full['labels']}): {mean_std(full)}.", ""]
  return "\n".join(lines).rstrip("\n")


REWARD_COLUMNS = (
  ("reward before", "reward_before", 3),
  ("reward after", "reward_after", 3),
  ("success before", "success_before", 3),
  ("success after", "success_after", 3),
  ("KL", "kl", 2),
  ("ref. ppl before", "reference_ppl_before", 1),
  ("ref. ppl after", "reference_ppl_after", 1),
  ("wall s", "wall_seconds", 0),
)


@table("reward_finetuning")
def reward_finetuning_table(record: Mapping[str, Any]) -> str:
  """experiments/reward_finetuning.py's record: per suite and estimator, reward, success, KL
  and reference perplexity before and after, mean ± std over seeds."""
  lines = [
    "| suite | estimator | " + " | ".join(c for c, _, _ in REWARD_COLUMNS) + " |",
    "|" + "---|" * (len(REWARD_COLUMNS) + 2),
  ]
  for suite, rows in record["results"].items():
    for estimator, cell in rows.items():
      values = [f"{cell[k]:.{d}f} ± {cell[k + '_std']:.{d}f}" for _, k, d in REWARD_COLUMNS]
      lines.append(f"| {suite} | {estimator} | " + " | ".join(values) + " |")
  return "\n".join(lines)

r"""Ablation sweeps: one run per combination of overridden values, one table at the end.

  python experiments/sweep.py --config configs/simclr_digits.py --workdir /tmp/sweep \
      --sweep task_kwargs.temperature=0.1,0.2,0.5 --sweep total_steps=300,600

Each run gets its own sub-workdir, so an interrupted sweep resumes where it stopped (finished
runs are read back from their results.json, not redone). Writes <workdir>/sweep.json and <workdir>/sweep.md.
"""

from __future__ import annotations

import ast
import itertools
import os

from absl import app, flags
from ml_collections import config_flags

from ssl_jax import train
from ssl_jax.files import write_json, write_text
from ssl_jax.metrics import format_results_table
from ssl_jax.progress import Progress

_CONFIG = config_flags.DEFINE_config_file("config", None, "Base config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory of the sweep.")
_SWEEP = flags.DEFINE_multi_string("sweep", [], "key=v1,v2,... (dotted config key).")


def parse_sweep(specs: list[str]) -> list[tuple[str, list]]:
  """["a.b=1,2"] -> [("a.b", [1, 2])]; values are Python literals, else strings."""
  axes = []
  for spec in specs:
    key, _, values = spec.partition("=")
    if not values:
      raise ValueError(f"--sweep {spec!r} is not of the form key=v1,v2.")
    parsed = []
    for value in values.split(","):
      try:
        parsed.append(ast.literal_eval(value))
      except (ValueError, SyntaxError):
        parsed.append(value)
    axes.append((key, parsed))
  return axes


def set_dotted(config, key: str, value) -> None:
  *parents, leaf = key.split(".")
  for parent in parents:
    config = config[parent]
  if leaf not in config:
    raise KeyError(f"--sweep key {key!r} is not in the config.")
  config[leaf] = value


def main(argv):
  del argv
  axes = parse_sweep(_SWEEP.value)
  rows = {}
  grid = list(itertools.product(*[v for _, v in axes]))
  progress = Progress("sweep", len(grid), delay=0.0, interval=0.0, rewrite=False)
  for values in grid:
    config = _CONFIG.value.copy_and_resolve_references()
    name = ",".join(f"{k}={v}" for (k, _), v in zip(axes, values)) or "base"
    for (key, _), value in zip(axes, values):
      set_dotted(config, key, value)
    results = train.train_and_evaluate(config, os.path.join(_WORKDIR.value, name))
    rows[name] = results
    progress.advance()
  write_json(os.path.join(_WORKDIR.value, "sweep.json"), rows)
  markdown = sweep_table(rows)
  write_text(os.path.join(_WORKDIR.value, "sweep.md"), markdown + "\n")
  print(markdown)


def sweep_table(results: dict[str, dict]) -> str:
  """Markdown: a row for each point and each row of its evaluations ("point · evaluator: row"),
  in the order the points ran; one point's rows never merge with another's."""
  table = {
    f"{name} · {evaluator}: {row}": values
    for name, result in results.items()
    for evaluator, rows in result["evals"].items()
    for row, values in rows.items()
  }
  return format_results_table({"sweep": table}, corner="point")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)

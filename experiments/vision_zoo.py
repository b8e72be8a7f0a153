r"""Every vision pretext method on digits with one shared recipe -> one results table.

  python experiments/vision_zoo.py --workdir /tmp/vision_zoo            # all methods, ~37 min on 2 CPU cores
  python experiments/vision_zoo.py --workdir /tmp/z --methods byol,mae --total_steps 100

Each method trains `configs/<method>_digits.py` in <workdir>/<method> (so an interrupted zoo
resumes; finished methods only re-evaluate) and is evaluated by the linear probe at 1/5/10/all
labels per class (mean ± std over 5 label draws) and kNN. Writes <workdir>/vision_zoo.json and
<workdir>/vision_zoo.md and the bar chart vision_zoo.png, with the random-init encoders and raw pixels as baseline rows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics

from absl import app, flags

from ssl_jax import train
from ssl_jax.metrics import write_json
from ssl_jax.plot.figure_file import save_figure
from ssl_jax.plot.result_figures import FIGURES
from ssl_jax.progress import Progress
from ssl_jax.report.tables import TABLES

METHODS = (
  "simclr",
  "moco_v3",
  "byol",
  "simsiam",
  "nnclr",
  "barlow_twins",
  "vicreg",
  "dino",
  "mae",
  "rotation",
  "denoising",
)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory of the zoo.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), f"Subset of {list(METHODS)}.")
_STEPS = flags.DEFINE_integer("total_steps", 0, "Override every config's total_steps (0: keep).")


def load_config(method: str):
  path = os.path.join(REPO, "configs", f"{method}_digits.py")
  if method not in METHODS or not os.path.exists(path):
    raise ValueError(f"Unknown method {method!r}; valid: {list(METHODS)}.")
  spec = importlib.util.spec_from_file_location(f"{method}_digits", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def median_throughput(workdir: str) -> float:
  """Median logged examples/s, skipping the first log (it includes the compilation)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  # Evaluator and early-stopping lines carry no throughput.
  values = [r["examples_per_second"] for r in records if "examples_per_second" in r]
  return statistics.median(values[1:] or values)


def zoo_rows(
  results: dict[str, dict], throughput: dict[str, float], encoders: dict[str, str]
) -> dict[str, dict]:
  """{row: {column: value}}: one row per method, then one random-init row per encoder kind
  and the raw-pixel row (baselines are identical across methods that share an encoder)."""
  rows: dict[str, dict] = {}
  baselines: dict[str, dict] = {}
  for method, result in results.items():
    merged: dict[str, dict] = {}
    for table in result["evals"].values():
      for row, values in table.items():
        merged.setdefault(row, {}).update(values)
    rows[method] = {
      **merged.pop(method),
      "train seconds": int(round(result["train_seconds"])),
      "examples/s": int(round(throughput[method])),
    }
    baselines.setdefault(f"random init ({encoders[method]})", merged["random init"])
    baselines.setdefault("raw pixels", merged["raw pixels"])
  return {**rows, **dict(sorted(baselines.items()))}


def main(argv):
  del argv
  results, throughput, encoders = {}, {}, {}
  progress = Progress("vision zoo", len(_METHODS.value), delay=0.0, interval=0.0, rewrite=False)
  for method in _METHODS.value:
    config = load_config(method)
    if _STEPS.value:
      config.total_steps = _STEPS.value
      config.checkpoint_every = min(config.checkpoint_every, _STEPS.value)
    workdir = os.path.join(_WORKDIR.value, method)
    results[method] = train.train_and_evaluate(config, workdir)
    throughput[method] = median_throughput(workdir)
    encoders[method] = config.model
    progress.advance()
  rows = zoo_rows(results, throughput, encoders)
  record = {"rows": rows}
  write_json(os.path.join(_WORKDIR.value, "vision_zoo.json"), record)
  save_figure(FIGURES["vision_zoo"](record), os.path.join(_WORKDIR.value, "vision_zoo.png"))
  markdown = TABLES["rows"](record)
  with open(os.path.join(_WORKDIR.value, "vision_zoo.md"), "w") as f:
    f.write(markdown + "\n")
  print(markdown)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)

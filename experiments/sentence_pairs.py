r"""Does sentence-pair pretraining help the tasks that read tokens and pairs? docs/language.md's NSP /
SOP, token-classification and sentence-pair tables, made by one command.

  python experiments/sentence_pairs.py --workdir /tmp/sentence_pairs

Pretraining (each 1,600 steps, `configs/bert_nsp_python.py` / `bert_sop_python.py`): MLM + NSP,
MLM + SOP, and MLM alone on the NSP rows (`pair_weight=0`: the same rows, tokenizer and
compute). Then every downstream cell fine-tunes one of them in full, or the NSP run's network
from random weights (`method=scratch`: the same architecture and tokenizer), on
  tagging  `configs/tag_python.py`: entity F1 (conlleval and strict IOB2) on `python_tags`
           at 1 / 5 / 10 / all labelled sentences per entity type;
  pairs    `configs/pair_python_packages.py`: test accuracy on `python_same_package` (chance
           50%) at 10 / 100 / all labelled pairs per class;
each a mean ± std over `--draws` label draws (at "all", over seeds). Every cell is one
`train.train_and_evaluate` run in its own sub-workdir (an interrupted experiment resumes).
`--pretraining` names a folder that already holds the runs `nsp`, `sop` and `mlm_only`.
Writes <workdir>/sentence_pairs.json and .md, copied to experiments/results/.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
from absl import app, flags

from ssl_jax import train
from ssl_jax.config_file import load_config_file
from ssl_jax.metrics import write_json
from ssl_jax.progress import Progress

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/sentence_pairs", "Where every run and the tables go.")
flags.DEFINE_string("pretraining", "", "A folder with finished runs nsp, sop and mlm_only.")
flags.DEFINE_integer("draws", 5, "Label draws per budget (seeds at 'all').")
flags.DEFINE_list("only", [], "Downstream suites to run (tagging, pairs); empty = both.")

PRETRAINING = {
  "nsp": ("bert_nsp_python", {}),
  "sop": ("bert_sop_python", {}),
  "mlm_only": ("bert_nsp_python", {"task_kwargs.pair_weight": 0.0}),
}
STARTS = {
  "from scratch": ("nsp", "scratch"),
  "MLM only": ("mlm_only", "full"),
  "MLM + NSP": ("nsp", "full"),
  "MLM + SOP": ("sop", "full"),
}
SUITES = {
  "tagging": dict(config="tag_python", budgets=(1, 5, 10, 0), steps=300),
  "pairs": dict(config="pair_python_packages", budgets=(10, 100, 0), steps=300),
}


def shipped_config(name: str):
  return load_config_file(os.path.join(REPO, "configs", f"{name}.py"))


def run_cell(config, workdir: str) -> dict:
  """The evals of one run (made unless it finished in `workdir`)."""
  path = os.path.join(workdir, "results.json")
  if not os.path.isfile(path):
    train.train_and_evaluate(config, workdir)
  with open(path) as f:
    return json.load(f)["evals"]


def pretrain(name: str, root: str) -> str:
  """The pretraining run `name` in root/name (made unless it finished there)."""
  workdir = os.path.join(root, name)
  config_name, overrides = PRETRAINING[name]
  config = shipped_config(config_name)
  for key, value in overrides.items():
    section, leaf = key.split(".")
    config[section][leaf] = value
  run_cell(config, workdir)
  return workdir


def downstream_config(suite: str, init_from: str, method: str, per_class: int, draw: int):
  spec = SUITES[suite]
  config = shipped_config(spec["config"])
  config.task_kwargs.init_from = init_from
  config.task_kwargs.method = method
  config.data.tokenizer_path = os.path.join(init_from, "tokenizer.model")
  config.label_budget.update(dict(per_class=per_class, draw=draw))
  config.seed = draw
  config.total_steps = spec["steps"]
  config.checkpoint_every = spec["steps"]
  config.keep_checkpoints = 1
  config.log_every = spec["steps"]
  return config


def scores(suite: str, evals: dict) -> dict[str, float]:
  """The cell's numbers, in percent."""
  if suite == "tagging":
    row = evals["token_classification"]["token_classification"]
    return {
      "entity F1 (conlleval)": 100 * row["entity F1 (conlleval)"],
      "entity F1 (strict)": 100 * row["entity F1 (strict)"],
    }
  return {"test acc": 100 * evals["classification"]["classification"]["test acc"]}


def budget_name(per_class: int) -> str:
  return "all" if per_class == 0 else str(per_class)


def run_suite(suite: str, runs: dict[str, str], root: str, draws: int) -> dict:
  """{start: {budget: {metric: {mean, std, values}}}}."""
  table: dict = {}
  cells = len(STARTS) * len(SUITES[suite]["budgets"]) * draws
  progress = Progress(f"sentence pairs, {suite}", cells, delay=0.0, interval=0.0, rewrite=False)
  for start, (run, method) in STARTS.items():
    for per_class in SUITES[suite]["budgets"]:
      values: dict[str, list[float]] = {}
      for draw in range(draws):
        workdir = os.path.join(root, suite, start.replace(" ", "_"), f"{per_class}_{draw}")
        config = downstream_config(suite, runs[run], method, per_class, draw)
        for metric, value in scores(suite, run_cell(config, workdir)).items():
          values.setdefault(metric, []).append(value)
        progress.advance()
      table.setdefault(start, {})[budget_name(per_class)] = {
        metric: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
        for metric, v in values.items()
      }
      summary = ", ".join(f"{m} {np.mean(v):.1f} ± {np.std(v):.1f}" for m, v in values.items())
      print(f"[{suite}] {start} @ {budget_name(per_class)}: {summary}", flush=True)
  return table


def pretraining_rows(runs: dict[str, str]) -> dict:
  """Held-out pair and masked-token accuracy of each pretraining run (its own evaluators)."""
  rows = {}
  for name, workdir in runs.items():
    with open(os.path.join(workdir, "results.json")) as f:
      evals = json.load(f)["evals"]
    pair = evals["pair_prediction"]
    ours = pair["bert_pretraining"]
    rows[name] = {
      "pair acc": 100 * next(v for k, v in ours.items() if k.endswith(" acc")),
      "majority": 100 * next(iter(pair["majority class"].values())),
      "masked acc": 100 * evals["masked_lm"]["bert_pretraining"]["masked acc"],
    }
  return rows


def markdown(results: dict) -> str:
  lines = ["| pretraining | held-out pair acc | majority class | held-out masked acc |"]
  lines.append("|---|---|---|---|")
  for name, row in results["pretraining"].items():
    lines.append(
      f"| {name} | {row['pair acc']:.1f} | {row['majority']:.1f} | {row['masked acc']:.1f} |"
    )
  for suite, table in results["suites"].items():
    budgets = [budget_name(b) for b in SUITES[suite]["budgets"]]
    unit = "sentences per entity type" if suite == "tagging" else "pairs per class"
    metrics = list(next(iter(next(iter(table.values())).values())))
    for metric in metrics:
      lines += ["", f"**{suite}: {metric}** (labelled {unit})", ""]
      lines.append("| start | " + " | ".join(budgets) + " |")
      lines.append("|---" * (len(budgets) + 1) + "|")
      for start, row in table.items():
        cells = [f"{row[b][metric]['mean']:.1f} ± {row[b][metric]['std']:.1f}" for b in budgets]
        lines.append(f"| {start} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  root = FLAGS.workdir
  os.makedirs(root, exist_ok=True)
  started = time.time()
  pretraining_root = FLAGS.pretraining or os.path.join(root, "pretraining")
  runs = {name: pretrain(name, pretraining_root) for name in PRETRAINING}
  suites = FLAGS.only or list(SUITES)
  previous = os.path.join(root, "sentence_pairs.json")
  done = {}
  if os.path.isfile(previous):  # a run of other suites (--only) keeps its tables
    with open(previous) as f:
      done = json.load(f)["suites"]
  results = {
    "pretraining": pretraining_rows(runs),
    "suites": {**done, **{suite: run_suite(suite, runs, root, FLAGS.draws) for suite in suites}},
    "draws": FLAGS.draws,
    "seconds": round(time.time() - started, 1),
    "command": "python experiments/sentence_pairs.py --workdir " + root,
  }
  write_json(os.path.join(root, "sentence_pairs.json"), results)
  with open(os.path.join(root, "sentence_pairs.md"), "w") as f:
    f.write(markdown(results))
  for name in ("sentence_pairs.json", "sentence_pairs.md"):
    shutil.copy(os.path.join(root, name), os.path.join(REPO, "experiments", "results", name))
  print(markdown(results))


if __name__ == "__main__":
  app.run(main)

r"""Reward fine-tuning, every estimator on each reward suite: the table and curves of docs/discovery.md.

  python experiments/reward_finetuning.py --workdir /tmp/reward_finetuning
  python experiments/reward_finetuning.py --workdir W --tasks toy --estimators rloo,grpo --seeds 1

Suites (each a config in configs/):
  toy         shortest paths on a random graph (trlX's random walks): a small GPT pretrained on
              valid random walks, rewarded by path optimality; success = a shortest path
              (configs/gpt_random_walks.py, reward_random_walks.py);
  classifier  the GPT pretrained on Python's docstrings, rewarded by p(logging) under the
              python_packages classifier fine-tuned from it; success = p >= 0.5
              (configs/reward_python_logging.py);
  rule        the same GPT, rewarded when its completion uses the word "file" (the `keyword`
              reward); success = the word is there (configs/reward_python_keyword.py).
Estimators: reinforce, rloo, grpo, or a spec with options, e.g. `grpo:loss_type=dr_grpo` or
`rloo:updates_per_batch=2`. The classifier suite also runs each estimator named by `--beta0`
at beta = 0 (rows "<estimator> beta=0"), the case the KL term exists for.

Each (suite, estimator, seed) is one trainer run in <workdir>/<suite>/<estimator>/seed_<s>;
a rerun finds it finished and redoes nothing. Reported per cell, mean and std over seeds (and
per seed): the held-out mean reward and success rate of the pretrained model (before) and of
the fine-tuned policy (after), the KL to the reference, the completions' perplexity under the
reference model, and the wall time. Writes <workdir>/reward_finetuning.json, .md and .png
(reward and KL over training steps). Pretraining runs are made first unless
`--toy_pretraining`, `--text_pretraining` and `--classifier` name finished workdirs.
"""

from __future__ import annotations

import ast
import json
import os

import numpy as np
from absl import app, flags, logging

from ssl_jax import train
from ssl_jax.config_file import load_config_file
from ssl_jax.metrics import write_json
from ssl_jax.plot.figure_file import save_figure
from ssl_jax.plot.result_figures import FIGURES
from ssl_jax.progress import Progress
from ssl_jax.report.tables import TABLES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# suite: (pretraining config, reward config)
SUITES = {
  "toy": ("gpt_random_walks", "reward_random_walks"),
  "classifier": ("gpt_python_text", "reward_python_logging"),
  "rule": ("gpt_python_text", "reward_python_keyword"),
}
METRICS = ("reward", "success", "kl", "reference ppl")

_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory of the experiment.")
_TASKS = flags.DEFINE_list("tasks", list(SUITES), f"Suites: {list(SUITES)}.")
_ESTIMATORS = flags.DEFINE_list("estimators", ["reinforce", "rloo", "grpo"], "Estimator specs.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per estimator.")
_BETA0 = flags.DEFINE_list("beta0", ["rloo"], "Estimators also run at beta=0 (classifier).")
_STEPS = flags.DEFINE_integer("steps", 0, "Train steps per run (0: the suite config's).")
_TOY_PRETRAINING = flags.DEFINE_string("toy_pretraining", "", "A finished gpt_random_walks run.")
_TEXT_PRETRAINING = flags.DEFINE_string("text_pretraining", "", "A finished gpt_python_text run.")
_CLASSIFIER = flags.DEFINE_string("classifier", "", "A finished python_packages classifier.")


def config_of(name: str):
  return load_config_file(os.path.join(REPO, "configs", f"{name}.py"))


def finished(workdir: str) -> bool:
  return os.path.isfile(os.path.join(workdir, "results.json"))


def pretraining_of(name: str, root: str) -> str:
  """The workdir of pretraining config `name`, trained under `root` unless given."""
  given = {"gpt_random_walks": _TOY_PRETRAINING.value, "gpt_python_text": _TEXT_PRETRAINING.value}
  if given[name]:
    return given[name]
  workdir = os.path.join(root, "pretraining", name)
  if not finished(workdir):
    config = config_of(name)
    config.evals = {}
    train.train_and_evaluate(config, workdir)
  return workdir


def classifier_of(gpt: str, root: str) -> str:
  """A python_packages classifier fine-tuned from the GPT run `gpt` (the learned reward)."""
  if _CLASSIFIER.value:
    return _CLASSIFIER.value
  workdir = os.path.join(root, "pretraining", "classify_python_packages")
  if not finished(workdir):
    config = config_of("classify_python_packages")
    config.task_kwargs.init_from = gpt
    config.data.tokenizer_path = os.path.join(gpt, "tokenizer.model")
    config.model = "transformer_decoder"
    train.train_and_evaluate(config, workdir)
  return workdir


def parse_spec(spec: str) -> tuple[str, dict]:
  """ "grpo:loss_type=dr_grpo" -> ("grpo", {"loss_type": "dr_grpo"})."""
  name, *options = spec.split(":")
  parse = lambda v: ast.literal_eval(v) if v[:1].isdigit() or v in ("True", "False") else v
  return name, {k: parse(v) for k, v in (option.split("=", 1) for option in options)}


def run_config(suite: str, spec: str, beta0: bool, seed: int, root: str):
  pretraining = pretraining_of(SUITES[suite][0], root)
  config = config_of(SUITES[suite][1])
  config.task_kwargs.init_from = pretraining
  config.data.tokenizer_path = os.path.join(pretraining, "tokenizer.model")
  if "classifier" in config.task_kwargs.rewards:
    config.task_kwargs.rewards.classifier.workdir = classifier_of(pretraining, root)
  name, options = parse_spec(spec)
  config.task_kwargs.estimator = {"name": name, **options}
  if beta0:
    config.task_kwargs.beta = 0.0
  if _STEPS.value:
    config.total_steps = _STEPS.value
    config.checkpoint_every = _STEPS.value
    config.evals.reward.every = 0
  config.seed = seed
  return config


def one_run(suite: str, spec: str, beta0: bool, seed: int, root: str) -> dict:
  row = spec + (" beta=0" if beta0 else "")
  workdir = os.path.join(root, suite, row.replace(" ", "_").replace(":", "_"), f"seed_{seed}")
  config = run_config(suite, spec, beta0, seed, root)
  if not finished(workdir):
    train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  table = results["evals"]["reward"]
  before, after = table["reference (before)"], table["reward_finetuning"]
  curves: dict[str, list] = {"step": [], "reward": [], "kl": []}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      if "reward" in record:
        curves["step"].append(record["step"])
        curves["reward"].append(record["reward"])
        # At beta = 0 the step has no reference, so no KL: the table's comes from evaluation.
        if config.task_kwargs.beta > 0:
          curves["kl"].append(record["kl"])
  return {
    "reward_before": before["reward"],
    "reward_after": after["reward"],
    "success_before": before["success"],
    "success_after": after["success"],
    "kl": after["kl"],
    "reference_ppl_before": before["reference ppl"],
    "reference_ppl_after": after["reference ppl"],
    "wall_seconds": results["train_seconds"],
    "curves": curves,
  }


def summarise(runs: list[dict]) -> dict:
  """Means over seeds, with the std and per-seed values beside them."""
  cell: dict = {}
  for key in runs[0]:
    if key == "curves":
      continue
    values = [float(r[key]) for r in runs]
    cell[key] = float(np.mean(values))
    cell[f"{key}_std"] = float(np.std(values))
    cell.setdefault("per_seed", {})[key] = values
  steps = runs[0]["curves"]["step"]
  cell["curves"] = {
    "step": steps,
    **{k: np.mean([r["curves"][k] for r in runs], 0).tolist() for k in ("reward", "kl")},
  }
  return cell


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  root = _WORKDIR.value
  unknown = [s for s in _TASKS.value if s not in SUITES]
  if unknown:
    raise app.UsageError(f"Unknown --tasks {unknown}; valid: {list(SUITES)}.")
  record = {"results": {}, "seeds": _SEEDS.value}
  for suite in _TASKS.value:
    rows = [(spec, False) for spec in _ESTIMATORS.value]
    if suite == "classifier":
      rows += [(spec, True) for spec in _BETA0.value]
    record["results"][suite] = {}
    progress = Progress(
      f"reward fine-tuning, {suite}",
      len(rows) * _SEEDS.value,
      delay=0.0,
      interval=0.0,
      rewrite=False,
    )
    for spec, beta0 in rows:
      runs = []
      for seed in range(_SEEDS.value):
        runs.append(one_run(suite, spec, beta0, seed, root))
        progress.advance()
      record["results"][suite][spec + (" beta=0" if beta0 else "")] = summarise(runs)
  os.makedirs(root, exist_ok=True)
  write_json(os.path.join(root, "reward_finetuning.json"), record)
  with open(os.path.join(root, "reward_finetuning.md"), "w") as f:
    f.write(TABLES["reward_finetuning"](record) + "\n")
  save_figure(FIGURES["reward_finetuning"](record), os.path.join(root, "reward_finetuning.png"))
  print(TABLES["reward_finetuning"](record), flush=True)


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  app.run(main)

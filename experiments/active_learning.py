r"""Which examples to label first: learning curves of every query strategy on self-supervised
features, the active-learning table and figure of docs/discovery.md, made by one command.

  python experiments/active_learning.py --workdir /tmp/active_learning
  python experiments/active_learning.py --workdir W --suite digits \
      --strategies random,typiclust,coreset,entropy --budgets 10,20 --seeds 2

Suites: digits (the 1,257 training images as the pool, features of a SimCLR run,
`configs/active_learning_digits.py`; budgets 10, 20, 30, 50, 100, 200) and text (the
`python_packages` docstrings, features of the GPT run, `configs/active_learning_python_packages.py`;
budgets 20, 40, 60, 100, 200, 400). For each strategy and seed, one active-learning run of
`ssl_jax.active.rounds` queries round by round up to each budget and trains the `linear_head`
learner (a linear head with input dropout on the frozen features) on the labels so far, then
tests it. Strategies that need a trained model (uncertainty, BALD-family, BADGE) take their
first round at random, as in their papers. Reported: test accuracy (%) at each budget, mean ±
std over `--seeds`, the same head trained on every pool label, and the fewest labels with
which a strategy's mean reaches 90% and 95% of that all-labels accuracy.

`--learner fine_tune` fine-tunes the whole network each round instead (the suite's fine-tuning
config through the trainer, `configs/classify_digits.py` / `classify_python_packages.py`) and
writes active_learning_fine_tune.{json,md,png}.

The pretraining runs are made first unless `--pretraining` (with one suite) or
`--digits_pretraining` / `--text_pretraining` name finished workdirs. Every (suite, strategy,
seed) run lives in its own sub-workdir and resumes where it stopped, so a restarted experiment
redoes nothing. Writes <workdir>/active_learning.json, active_learning.md and
active_learning.png. On 2 CPU cores the whole experiment takes about 25 minutes after the
pretraining (SimCLR ~5 minutes, GPT ~5 minutes).
"""

from __future__ import annotations

import ast
import os
import time

import numpy as np
from absl import app, flags, logging

from ssl_jax import train
from ssl_jax.active import rounds, schema
from ssl_jax.active.learners import LEARNERS, RoundInputs
from ssl_jax.active.strategies.base import QUERY_STRATEGIES
from ssl_jax.config_file import load_config_file
from ssl_jax.metrics import write_json
from ssl_jax.plot.figure_file import save_figure
from ssl_jax.plot.result_figures import FIGURES
from ssl_jax.progress import Progress
from ssl_jax.report.tables import TABLES

SUITES = {
  # suite: (pretraining config, active-learning config, default budgets, fine-tuning config)
  "digits": (
    "simclr_digits",
    "active_learning_digits",
    (10, 20, 30, 50, 100, 200),
    "configs/classify_digits.py",
  ),
  "text": (
    "gpt_python_text",
    "active_learning_python_packages",
    (20, 40, 60, 100, 200, 400),
    "configs/classify_python_packages.py",
  ),
}
# Reference draws first, then diversity / representativeness, then model-based strategies.
ORDER = (
  "random", "stratified_random", "typiclust", "probcover", "coreset", "badge",
  "least_confidence", "margin", "entropy", "bald", "power_bald", "batch_bald",
)  # fmt: skip

_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory of the experiment.")
_SUITE = flags.DEFINE_list("suite", list(SUITES), f"Suites: {list(SUITES)}.")
_STRATEGIES = flags.DEFINE_list(
  "strategies",
  [],
  "Query strategies, each `name` or `name:option=value[:...]` (default: every one, and "
  "ProbCover at a fixed radius of 0.4 beside the purity rule's).",
)
_BUDGETS = flags.DEFINE_list("budgets", [], "Labelled-set sizes (default: the suite's).")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds (independent runs) per strategy.")
_LEARNER = flags.DEFINE_enum(
  "learner",
  "linear_head",
  ["linear_head", "fine_tune"],
  "linear_head (frozen features) or fine_tune (a full fine-tune of the suite's config per round).",
)
_PRETRAINING = flags.DEFINE_string("pretraining", "", "A finished pretraining (one suite).")
_DIGITS_PRETRAINING = flags.DEFINE_string("digits_pretraining", "", "A finished SimCLR run.")
_TEXT_PRETRAINING = flags.DEFINE_string("text_pretraining", "", "A finished GPT run.")
flags.mark_flag_as_required("workdir")


def config_of(name: str):
  return load_config_file(os.path.join("configs", f"{name}.py"))


def pretraining_of(suite: str, root: str) -> str:
  given = {"digits": _DIGITS_PRETRAINING.value, "text": _TEXT_PRETRAINING.value}[suite]
  given = given or (_PRETRAINING.value if len(_SUITE.value) == 1 else "")
  if given:
    return given
  workdir = os.path.join(root, "pretraining", SUITES[suite][0])
  if not os.path.isfile(os.path.join(workdir, "results.json")):
    config = config_of(SUITES[suite][0])
    config.evals = {}
    train.train_and_evaluate(config, workdir)
  return workdir


def parse_spec(spec: str) -> tuple[str, dict]:
  """ "probcover:radius=0.4" -> ("probcover", {"radius": 0.4}): a strategy and its options."""
  name, *options = spec.split(":")
  return name, {k: ast.literal_eval(v) for k, v in (option.split("=", 1) for option in options)}


def al_config(suite: str, init_from: str, spec: str, budgets: list[int], seed: int):
  config = config_of(SUITES[suite][1])
  config.init_from = init_from
  config.seed = seed
  strategy, options = parse_spec(spec)
  config.active.strategy = strategy
  config.active.strategy_kwargs = options
  if not QUERY_STRATEGIES.get(strategy).cold_start():
    config.active.first_strategy = "random"
  config.active.budgets = budgets
  if _LEARNER.value == "fine_tune":
    config.active.learner = "fine_tune"
    config.active.learner_kwargs = {"config_file": SUITES[suite][3]}
  return config


def shared_features(source: str, workdir: str) -> None:
  """Links the suite's cached pretrained features into a run's workdir (computed once)."""
  target = os.path.join(workdir, "pretrained_features.npz")
  if os.path.isfile(source) and not os.path.exists(target):
    os.makedirs(workdir, exist_ok=True)
    os.link(source, target)


def all_labels_accuracy(suite: str, init_from: str, root: str, seeds: int) -> list[float]:
  """Test accuracy (%) of the learner trained on every pool label, per seed."""
  config = schema.resolve(al_config(suite, init_from, "random", [1], 0))
  directory = os.path.join(root, suite, "all_labels")
  data = rounds.pool_data(config, directory)  # also the features every run links to
  learner = LEARNERS.build(config.active.learner, config.active.learner_kwargs, data, config)
  labels = np.asarray(data.dataset.split("train")["label"])
  if _LEARNER.value != "linear_head":
    directory = os.path.join(directory, _LEARNER.value)
  everything = np.arange(len(labels))
  return [
    100
    * learner.fit(
      RoundInputs(0, everything, labels, os.path.join(directory, str(s)), None, s),
      warm_start=False,
    ).test_accuracy
    for s in range(seeds)
  ]


def labels_to_reach(row: dict[str, dict], target: float) -> int | None:
  """The smallest budget whose mean accuracy reaches `target` (None: none of them)."""
  for budget, cell in sorted(row.items(), key=lambda item: int(item[0])):
    if cell["mean"] >= target:
      return int(budget)
  return None


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint read at INFO
  root = _WORKDIR.value
  unknown = sorted(set(_SUITE.value) - set(SUITES))
  if unknown:
    raise app.UsageError(f"Unknown suites {unknown}; valid: {list(SUITES)}.")
  strategies = _STRATEGIES.value or [s for s in ORDER if s in QUERY_STRATEGIES] + [
    "probcover:radius=0.4"
  ]
  for spec in strategies:
    name, options = parse_spec(spec)  # an unknown name or option stops here, listing valid ones
    QUERY_STRATEGIES.validate(name, options)
  start = time.time()
  record = {
    "results": {},
    "all_labels": {},
    "labels_to_reach": {},
    "seeds": _SEEDS.value,
    "learner": _LEARNER.value,
  }
  for suite in _SUITE.value:
    init_from = pretraining_of(suite, root)
    budgets = [int(b) for b in _BUDGETS.value] or list(SUITES[suite][2])
    full = all_labels_accuracy(suite, init_from, root, _SEEDS.value)
    cache = os.path.join(root, suite, "all_labels", "pretrained_features.npz")
    pool = len(np.load(cache)["train"])
    record["all_labels"][suite] = dict(
      mean=float(np.mean(full)), std=float(np.std(full)), values=full, labels=pool
    )
    table, reach = {}, {}
    progress = Progress(
      f"active learning, {suite}",
      len(strategies) * _SEEDS.value,
      delay=0.0,
      interval=0.0,
      rewrite=False,
    )
    for strategy in strategies:
      curves = []
      for seed in range(_SEEDS.value):
        slug = strategy.replace(":", "_").replace("=", "")
        if _LEARNER.value != "linear_head":
          slug = os.path.join(_LEARNER.value, slug)
        workdir = os.path.join(root, suite, slug, f"seed_{seed}")
        shared_features(cache, workdir)
        result = rounds.run_active_learning(
          al_config(suite, init_from, strategy, budgets, seed), workdir
        )
        curves.append([100 * result["curve"][str(b)] for b in budgets])
        progress.advance()
      values = np.asarray(curves)
      table[strategy] = {
        str(b): dict(
          mean=float(values[:, j].mean()),
          std=float(values[:, j].std()),
          values=values[:, j].tolist(),
        )
        for j, b in enumerate(budgets)
      }
      reach[strategy] = {
        f"{int(100 * f)}%": labels_to_reach(
          table[strategy], f * record["all_labels"][suite]["mean"]
        )
        for f in (0.9, 0.95)
      }
      print(
        f"[{suite}] {strategy}: "
        + ", ".join(f"{b}: {table[strategy][str(b)]['mean']:.1f}" for b in budgets),
        flush=True,
      )
    record["results"][suite], record["labels_to_reach"][suite] = table, reach
  record["seconds"] = round(time.time() - start, 1)
  name = "active_learning" + ("" if _LEARNER.value == "linear_head" else f"_{_LEARNER.value}")
  write_json(os.path.join(root, f"{name}.json"), record)
  with open(os.path.join(root, f"{name}.md"), "w") as f:
    f.write(TABLES["active_learning"](record) + "\n")
  save_figure(FIGURES["active_learning"](record), os.path.join(root, f"{name}.png"))
  print(TABLES["active_learning"](record))


if __name__ == "__main__":
  app.run(main)

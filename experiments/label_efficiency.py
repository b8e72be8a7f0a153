r"""Which way of internalizing pretrained knowledge wins at which label budget: the docs'
label-efficiency and robustness tables, made by one command.

  python experiments/label_efficiency.py --workdir /tmp/label_efficiency

Suites: digits (VICReg-pretrained ResNet, `configs/classify_digits.py`) and the
`python_packages` text task (`configs/classify_python_packages.py`) from the BERT (masked LM)
run and from the GPT (causal LM) run; `text_t5` and `text_electra` fine-tune the T5 run (its
encoder) and the ELECTRA run (its discriminator) with the same config, only init_from
changing (linear probe and full fine-tune rows). Each at 1, 5, 10 and all labels per class,
a mean ± std over `--draws` label draws (at "all", over seeds): training the same network from
scratch, a linear head on the frozen encoder, full fine-tuning, LoRA, and semi-supervised
fine-tuning (the pretraining loss on every train example plus cross entropy on the labelled
ones). Text also gets bottleneck adapters, prefix tuning and prompt tuning, each at the
learning rate (of LR_CANDIDATES) with the best validation accuracy at 5 labels per class, and
zero-shot scoring by the pretraining run itself (GPT: PMI; BERT: PET). "task weights on disk"
is what a run ships beyond its pretraining checkpoint (`adapt.task_weights`: the trained
parameters alone). Then, per suite with every label: clean and PGD accuracy of full
fine-tuning with and without adversarial training (digits: pixel PGD; text: FreeLB, attacked
by embedding PGD).

Every cell is one `train.train_and_evaluate` run of the shipped config (same trainer,
checkpoints and metrics as pretraining) in its own sub-workdir, so an interrupted experiment
resumes where it stopped. The pretraining runs are made first unless `--digits_pretraining`,
`--text_pretraining` and `--lm_pretraining` name finished workdirs. Writes
<workdir>/label_efficiency.json and label_efficiency.md, and the figures label_efficiency.png
and robustness.png. XLA's persistent compilation cache
(<workdir>/xla_cache) lets runs with the same shapes skip compiling. On 2 CPU cores the whole
experiment takes about 3 hours (a text cell 15-50 s, a digits cell about a minute).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import types
from typing import Any

import jax
import numpy as np
from absl import app, flags

from ssl_jax import train
from ssl_jax.metrics import write_json
from ssl_jax.plot.figure_file import save_figure
from ssl_jax.plot.result_figures import FIGURES
from ssl_jax.progress import Progress
from ssl_jax.report.tables import TABLES
from ssl_jax.runs.model_dir import is_model_directory

markdown, robustness_markdown = TABLES["label_efficiency"], TABLES["robustness"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_module(name: str) -> types.ModuleType:
  """configs/<name>.py as a module (configs/ is a folder of files, not a package)."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


vicreg_digits, classify_digits = config_module("vicreg_digits"), config_module("classify_digits")
bert_python_text, gpt_python_text = (
  config_module("bert_python_text"),
  config_module("gpt_python_text"),
)
t5_python_text, electra_python_text = (
  config_module("t5_python_text"),
  config_module("electra_python_text"),
)
classify_python_packages = config_module("classify_python_packages")
zero_shot_python_packages = config_module("zero_shot_python_packages")

_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory of the experiment.")
_SUITES = flags.DEFINE_list(
  "suites",
  ["digits", "text", "text_gpt", "text_t5", "text_electra"],
  "digits; text (from the BERT run); text_gpt (from the GPT run); text_t5, text_electra (from "
  "the T5 and ELECTRA runs: linear probe and full fine-tune); text_hf (from the model directory "
  "--model_directory: from scratch, linear probe, full fine-tune, LoRA).",
)
_MODEL_DIRECTORY = flags.DEFINE_string(
  "model_directory", "", "A Hugging Face model directory (BERT / GPT-2 / Llama) for text_hf."
)
_RESULTS_NAME = flags.DEFINE_string(
  "results_name", "label_efficiency", "Basename of the JSON, markdown and figure written."
)
_BUDGETS = flags.DEFINE_list("budgets", ["1", "5", "10", "0"], "Labels per class; 0 = all.")
_DRAWS = flags.DEFINE_integer("draws", 5, "Label draws (seeds at 'all') per budget.")
_DIGITS_PRETRAINING = flags.DEFINE_string(
  "digits_pretraining", "", "A finished configs/vicreg_digits.py workdir."
)
_TEXT_PRETRAINING = flags.DEFINE_string(
  "text_pretraining", "", "A finished configs/bert_python_text.py workdir."
)
_LM_PRETRAINING = flags.DEFINE_string(
  "lm_pretraining", "", "A finished configs/gpt_python_text.py workdir."
)
_ROBUSTNESS = flags.DEFINE_bool("robustness", True, "Also make the robustness table.")

# method -> (task_kwargs, label_budget.unlabelled, optimizer overrides). The learning rates
# were chosen on the validation split (text) / with 5 labels per class (digits).
DIGITS_METHODS = {
  "from scratch": (dict(method="scratch"), "drop", {}),
  "linear probe": (dict(method="linear"), "drop", dict(learning_rate=3e-2)),
  "full fine-tune": (dict(method="full"), "drop", {}),
  "LoRA (rank 4, every conv)": (
    dict(method="peft", peft=dict(name="lora", rank=4, alpha=8.0)),
    "drop",
    dict(learning_rate=1e-2),
  ),
  "semi-supervised (+ VICReg loss)": (
    dict(method="full", semi_supervised=dict(name="pretext")),
    "pair",
    {},
  ),
}
TEXT_METHODS = {
  "from scratch": (dict(method="scratch"), "drop", {}),
  "linear probe": (dict(method="linear"), "drop", dict(learning_rate=3e-2)),
  "full fine-tune": (dict(method="full"), "drop", {}),
  "LoRA (rank 8, query/value)": (
    dict(method="peft", peft=dict(name="lora", rank=8, alpha=16.0)),
    "drop",
    dict(learning_rate=1e-2),
  ),
  "semi-supervised (+ LM loss)": (
    dict(method="full", semi_supervised=dict(name="pretext")),
    "pair",
    {},
  ),
}
# Text-only parameter-efficient rows; their learning rates are picked on the validation split
# (`select_learning_rate`) from LR_CANDIDATES at 5 labels per class, draw 0.
TEXT_PEFT_METHODS = {
  "bottleneck adapters (size 16)": dict(method="peft", peft=dict(name="adapter", size=16)),
  "prefix tuning (10 per layer)": dict(method="peft", peft=dict(name="prefix", length=10)),
  "prompt tuning (10 tokens)": dict(method="peft", peft=dict(name="prompt", length=10)),
}
# The T5 (its encoder) and ELECTRA (its discriminator) runs fine-tune with the same command,
# only init_from changes: the two rows every encoder gets.
ENCODER_METHODS = {name: TEXT_METHODS[name] for name in ("linear probe", "full fine-tune")}
LR_CANDIDATES = (3e-3, 1e-2, 3e-2, 1e-1)
# A model directory's rows (`text_hf`): its architecture from scratch, and three ways of
# fine-tuning its weights.
HF_METHODS = ("from scratch", "linear probe", "full fine-tune", "LoRA (rank 8, query/value)")


def pretrain(module, workdir: str) -> str:
  """Runs a pretraining config into `workdir` unless it already finished there."""
  config = module.get_config()
  config.evals = {}
  if not os.path.isfile(os.path.join(workdir, "results.json")):
    train.train_and_evaluate(config, workdir)
  return workdir


def run_cell(config, workdir: str, key: str = "evals") -> Any:
  """One run's results.json[key] (cached in its workdir)."""
  path = os.path.join(workdir, "results.json")
  if not os.path.isfile(path):
    train.train_and_evaluate(config, workdir)
  with open(path) as f:
    return json.load(f)[key]


def task_weights_bytes(
  module, init_from: str, task_kwargs: dict, unlabelled: str, workdir: str
) -> int:
  """Bytes on disk of what a fine-tune with these options ships (`adapt.task_weights`): the
  same for every budget and draw, so measured once, on a 1-step run."""
  config = cell_config(module, init_from, task_kwargs, unlabelled, {}, 5, 0)
  config.total_steps, config.evals = 1, {}
  return run_cell(config, workdir, "task_weights")["bytes"]


# Shorter text runs than the shipped config (300 steps of 64) keep each text suite's ~180 runs
# near an hour on 2 CPU cores.
_TEXT_OVERRIDES = dict(total_steps=150, batch_size=32)
SUITE_OVERRIDES = {
  "digits": {},
  **{
    suite: _TEXT_OVERRIDES for suite in ("text", "text_gpt", "text_t5", "text_electra", "text_hf")
  },
}


def cell_config(
  module,
  init_from: str,
  task_kwargs: dict,
  unlabelled: str,
  optim: dict,
  per_class: int,
  draw: int,
  overrides: dict | None = None,
):
  config = module.get_config()
  config.update(overrides or {})
  config.task_kwargs.init_from = init_from
  config.task_kwargs.update(task_kwargs)
  if "tokenizer_path" in config.data:  # text: read the pieces the encoder was trained on
    config.data.tokenizer_path = (
      init_from if is_model_directory(init_from) else os.path.join(init_from, "tokenizer.model")
    )
  config.optim.update(optim)
  config.label_budget.update(dict(per_class=per_class, draw=draw, unlabelled=unlabelled))
  config.seed = draw
  config.checkpoint_every = config.total_steps
  config.keep_checkpoints = 1
  return config


def select_learning_rate(
  suite: str, name: str, task_kwargs: dict, init_from: str, root: str
) -> float:
  """The candidate learning rate with the best validation accuracy at 5 labels per class
  (draw 0) on the text task; the test split is never read for the choice."""
  scores = {}
  for lr in LR_CANDIDATES:
    slug = f"{name.split(' (')[0].replace(' ', '_')}/lr_{lr:g}"
    evals = run_cell(
      cell_config(
        classify_python_packages,
        init_from,
        task_kwargs,
        "drop",
        dict(learning_rate=lr),
        5,
        0,
        SUITE_OVERRIDES[suite],
      ),
      os.path.join(root, suite, "lr_selection", slug),
    )
    scores[lr] = next(iter(evals["classification"].values()))["validation acc"]
  best = max(scores, key=scores.get)
  print(f"[{suite} lr] {name}: validation acc {scores} -> {best:g}", flush=True)
  return best


def label_efficiency(
  suite: str, module, methods, init_from: str, root: str
) -> dict[str, dict[str, Any]]:
  budgets = [int(b) for b in _BUDGETS.value]
  table: dict[str, dict[str, Any]] = {}
  cells = len(methods) * len(budgets) * _DRAWS.value
  progress = Progress(f"label efficiency, {suite}", cells, delay=0.0, interval=0.0, rewrite=False)
  for name, (task_kwargs, unlabelled, optim) in methods.items():
    row: dict[str, Any] = {}
    for per_class in budgets:
      accuracies = []
      for draw in range(_DRAWS.value):
        slug = f"{name.split(' (')[0].replace(' ', '_')}/{per_class}_{draw}"
        evals = run_cell(
          cell_config(
            module,
            init_from,
            task_kwargs,
            unlabelled,
            optim,
            per_class,
            draw,
            SUITE_OVERRIDES[suite],
          ),
          os.path.join(root, suite, slug),
        )
        result = next(iter(evals["classification"].values()))
        accuracies.append(100 * result["test acc"])
        progress.advance()
        row["trainable params"] = result["trainable params"]
      column = f"{per_class}/class" if per_class else "all"
      row[column] = {"mean": float(np.mean(accuracies)), "std": float(np.std(accuracies))}
      print(
        f"[{suite}] {name} @ {column}: {np.mean(accuracies):.1f} ± {np.std(accuracies):.1f}",
        flush=True,
      )
    row["task weights bytes"] = task_weights_bytes(
      module,
      init_from,
      task_kwargs,
      unlabelled,
      os.path.join(root, suite, "task_weights", name.split(" (")[0].replace(" ", "_")),
    )
    table[name] = row
  return table


def zero_shot_row(suite: str, init_from: str, root: str) -> dict[str, Any]:
  """Zero-shot accuracy of the pretraining run itself (GPT: PMI scoring; BERT: PET): no
  labels, so the same number at every budget."""
  config = zero_shot_python_packages.get_config()
  # The suite says which pretraining run init_from is (text: BERT, text_gpt: GPT).
  name, scoring = (
    ("zero-shot (PMI)", "pmi") if suite == "text_gpt" else ("zero-shot (PET)", "per_token")
  )
  config.task_kwargs.update(dict(init_from=init_from, scoring=scoring))
  config.data.tokenizer_path = os.path.join(init_from, "tokenizer.model")
  config.total_steps = 0
  evals = run_cell(config, os.path.join(root, suite, "zero_shot"))
  accuracy = 100 * next(iter(evals["classification"].values()))["test acc"]
  row: dict[str, Any] = {
    column: {"mean": accuracy, "std": 0.0}
    for column in [f"{b}/class" if int(b) else "all" for b in _BUDGETS.value]
  }
  row["trainable params"] = 0
  return {name: row}


def robustness(suite: str, init_from: str, root: str) -> dict[str, Any]:
  """Clean and PGD accuracy of full fine-tuning with every label, with and without adversarial
  training. Digits: PGD in pixel space (L-inf; training eps 0.1, 5 steps; attack 10 steps at
  eps 0.05 and 0.1). Text: FreeLB in embedding space (L2 per example; training eps 0.3, 2
  steps of 0.15; attack: embedding PGD, 5 steps of 0.05, at eps 0.05, 0.1 and 0.2)."""
  if suite == "digits":
    module, attacks = (
      classify_digits,
      (("standard fine-tune", "none"), ("PGD adversarial fine-tune", "pgd")),
    )
    training = dict(eps=0.1, steps=5, step_size=0.03)
    attack = dict(eps=(0.05, 0.1), steps=10, step_size=0.025)
    overrides = dict(total_steps=400)
  else:
    module, attacks = (
      classify_python_packages,
      (("standard fine-tune", "none"), ("FreeLB adversarial fine-tune", "freelb")),
    )
    training = dict(eps=0.3, steps=2, step_size=0.15)
    attack = dict(eps=(0.05, 0.1, 0.2), norm="l2", steps=5, step_size=0.05)
    overrides = SUITE_OVERRIDES[suite]
  table = {}
  for name, mode in attacks:
    config = cell_config(
      module,
      init_from,
      dict(
        method="full",
        adversarial={"name": "none"} if mode == "none" else {"name": mode, **training},
      ),
      "drop",
      {},
      0,
      0,
      overrides,
    )
    config.evals = {"robustness": attack}
    evals = run_cell(config, os.path.join(root, suite, "robustness", mode))
    table[name] = {k: 100 * v for k, v in next(iter(evals["robustness"].values())).items()}
  return table


def main(argv):
  del argv
  root = _WORKDIR.value
  jax.config.update("jax_compilation_cache_dir", os.path.join(root, "xla_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  start = time.perf_counter()
  results: dict[str, Any] = {}
  sections = []
  if "digits" in _SUITES.value:
    digits = _DIGITS_PRETRAINING.value or pretrain(
      vicreg_digits, os.path.join(root, "pretrain", "vicreg_digits")
    )
    results["digits"] = label_efficiency("digits", classify_digits, DIGITS_METHODS, digits, root)
    sections.append("## digits, test accuracy (%)\n\n" + markdown(results["digits"]))
    if _ROBUSTNESS.value:
      results["digits robustness"] = robustness("digits", digits, root)
      sections.append(
        "## digits robustness, test accuracy (%)\n\n"
        + robustness_markdown(results["digits robustness"])
      )
  text_suites = [suite for suite in ("text", "text_gpt") if suite in _SUITES.value]
  encoder_suites = [suite for suite in ("text_t5", "text_electra") if suite in _SUITES.value]
  # Only the suites asked for are pretrained (each pretraining run takes minutes).
  encoders = {
    "text": ("BERT (masked LM)", _TEXT_PRETRAINING, bert_python_text),
    "text_gpt": ("GPT (causal LM)", _LM_PRETRAINING, gpt_python_text),
  }
  for suite in text_suites:
    encoder, given, pretraining = encoders[suite]
    init_from = given.value or pretrain(
      pretraining, os.path.join(root, "pretrain", pretraining.__name__)
    )
    methods = dict(TEXT_METHODS)
    for name, task_kwargs in TEXT_PEFT_METHODS.items():
      lr = select_learning_rate(suite, name, task_kwargs, init_from, root)
      methods[f"{name}, lr {lr:g}"] = (task_kwargs, "drop", dict(learning_rate=lr))
    table = label_efficiency(suite, classify_python_packages, methods, init_from, root)
    results[suite] = {**table, **zero_shot_row(suite, init_from, root)}
    sections.append(
      f"## python_packages from the {encoder} run, test accuracy (%)\n\n" + markdown(results[suite])
    )
    if _ROBUSTNESS.value:
      results[f"{suite} robustness"] = robustness(suite, init_from, root)
      sections.append(
        f"## python_packages robustness, from the {encoder} run, test accuracy "
        "(%)\n\n" + robustness_markdown(results[f"{suite} robustness"])
      )
  encoders = {
    "text_t5": ("T5 (span corruption; its encoder)", t5_python_text),
    "text_electra": ("ELECTRA (its discriminator)", electra_python_text),
  }
  for suite in encoder_suites:
    encoder, pretraining = encoders[suite]
    init_from = pretrain(pretraining, os.path.join(root, "pretrain", pretraining.__name__))
    table = label_efficiency(suite, classify_python_packages, ENCODER_METHODS, init_from, root)
    results[suite] = table
    sections.append(
      f"## python_packages from the {encoder} run, test accuracy (%)\n\n" + markdown(table)
    )
  if "text_hf" in _SUITES.value:
    if not is_model_directory(_MODEL_DIRECTORY.value):
      raise app.UsageError(
        f"--model_directory={_MODEL_DIRECTORY.value!r} is not a model directory."
      )
    methods = {name: TEXT_METHODS[name] for name in HF_METHODS}
    table = label_efficiency(
      "text_hf", classify_python_packages, methods, _MODEL_DIRECTORY.value, root
    )
    results["text_hf"] = table
    sections.append(
      f"## python_packages from the model directory {_MODEL_DIRECTORY.value}, test accuracy "
      "(%)\n\n" + markdown(table)
    )
  results["seconds"] = round(time.perf_counter() - start, 1)
  name = _RESULTS_NAME.value
  write_json(os.path.join(root, f"{name}.json"), results)
  report = "\n\n".join(sections)
  save_figure(FIGURES["label_efficiency"](results), os.path.join(root, f"{name}.png"))
  if any(suite.endswith(" robustness") for suite in results):
    save_figure(FIGURES["robustness"](results), os.path.join(root, "robustness.png"))
  with open(os.path.join(root, f"{name}.md"), "w") as f:
    f.write(report + "\n")
  print(report)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)

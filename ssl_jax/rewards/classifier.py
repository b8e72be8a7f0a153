"""A learned reward: the probability a fine-tuned classifier gives a chosen class.

  config.task_kwargs.rewards = {"classifier": {"workdir": "/tmp/classify_gpt",
                                               "target_class": "logging"}}

`workdir` is a finished run of a task with the `Classifier` capability (e.g. `classification`
fine-tuned from the same GPT run); its config.json rebuilds it and its newest intact
checkpoint gives the weights. The classifier must read the policy's tokens: its tokenizer is
the prompts' tokenizer (the same file contents), checked before any work. It scores
`[CLS] prompt completion [SEP]` (or the completion alone), cut to its training rows' length,
on device inside the step.
"""

from __future__ import annotations

import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.capabilities import Classifier
from ssl_jax.data.source import Dataset
from ssl_jax.errors import ConfigError
from ssl_jax.parallel import replicate_on_current_mesh
from ssl_jax.rewards.base import REWARDS, Reward, RewardContext, join_prompt_completion
from ssl_jax.runs.finished import check_source, load_finished_run


def _file_digest(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


@REWARDS.register("classifier")
class ClassifierProbability(Reward):
  """p(target_class | text) under the classifier in `workdir` (see the module docstring)."""

  on_host = False
  needs_info = ("tokenizer_path",)

  def __init__(
    self,
    context: RewardContext,
    workdir: str = "",
    target_class: str = "",
    include_prompt: bool = True,
  ):
    super().__init__(context)
    where = "config.task_kwargs.rewards.classifier"
    if not workdir:
      raise ConfigError(f"{where}.workdir is empty: name a finished classification run.")
    config = check_source(workdir, requires=(Classifier,), what=f"{where}.workdir")
    info = config.get("dataset_info", {})
    names = list(info.get("class_names", []))
    if target_class not in names:
      raise ConfigError(f"{where}.target_class={target_class!r}; valid: {names}.")
    theirs = info.get("tokenizer_path", "")
    ours = context.info["tokenizer_path"]
    if not theirs or not os.path.isfile(theirs) or _file_digest(theirs) != _file_digest(ours):
      raise ConfigError(
        f"{where}.workdir={workdir!r} reads tokens of tokenizer {theirs!r}, not the prompts' "
        f"{ours!r}: fine-tune the classifier from the policy's pretraining run."
      )
    like = Dataset({"train": {"tokens": np.zeros((1, 2), np.int32)}}, "text", info={})
    run = load_finished_run(workdir, like, requires=(Classifier,), what=f"{where}.workdir")
    self.task = run.task
    self.seq_len = int(run.rows["tokens"].shape[1])
    self.variables = replicate_on_current_mesh(
      (run.variables["params"], run.variables["model_state"])
    )
    self.target = names.index(target_class)
    self.include_prompt = bool(include_prompt)
    # The classifier's rows start and end with its tokenizer's tokens (the prompts' tokenizer).
    self.cls_id = int(info.get("cls_id", context.info.get("bos_id")))
    self.sep_id = int(info.get("sep_id", context.eos_id))

  def __call__(self, prompts, completions, batch):
    if self.include_prompt:
      tokens = join_prompt_completion(
        prompts, batch["prompt_length"], completions, self.context.pad_id
      )
    else:
      cls = jnp.full((completions.shape[0], 1), self.cls_id, completions.dtype)
      tokens = jnp.concatenate([cls, completions], 1)
    if tokens.shape[1] >= self.seq_len:
      tokens = tokens[:, : self.seq_len]
      last = tokens[:, -1]
      tokens = tokens.at[:, -1].set(jnp.where(last != self.context.pad_id, self.sep_id, last))
    else:
      pad = jnp.full((tokens.shape[0], self.seq_len - tokens.shape[1]), self.context.pad_id)
      tokens = jnp.concatenate([tokens, pad.astype(tokens.dtype)], 1)
    logits = self.task.logits(*self.variables, {"tokens": tokens}, None, train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), -1)[:, self.target]

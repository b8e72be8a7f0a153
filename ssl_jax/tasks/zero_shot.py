"""Zero-shot text classification: a pretrained language model scores each class's label word
after the text and a prompt (`ssl_jax.adapt.zero_shot`); nothing trains.

  config.task = "zero_shot"
  config.task_kwargs = {"init_from": "/tmp/gpt_python_text", "scoring": "per_token",
                        "verbalizers": "loop,email,...", "prompt": " This is from the Python module"}
  config.total_steps = 0

`init_from` is any pretraining run whose task predicts next tokens (causal scoring) or masked
tokens at a position (PET scoring), chosen by its declared capability. The `classification`
evaluator reports its accuracy beside the majority class.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax.adapt import zero_shot
from ssl_jax.capabilities import (
  Classifier,
  MaskedTokenPredictor,
  NextTokenPredictor,
  tasks_with,
)
from ssl_jax.data.source import Dataset
from ssl_jax.data.tokenizer import load_tokenizer
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.runs.finished import load_finished_run
from ssl_jax.tasks.base import Task
from ssl_jax.tasks.pretrained_weights import place_like

DEFAULT_PROMPT = " This is from the Python module"


@TASKS.register("zero_shot")
class ZeroShot(Task, Classifier):
  """Class scores of a pretrained LM as logits. Options: init_from (required), prompt,
  verbalizers (comma-separated label words; default the class names), scoring (causal LMs:
  sum | per_token | pmi; PET uses the word's log-probability at [MASK])."""

  modality = "text"

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    init_from: str = "",
    prompt: str = DEFAULT_PROMPT,
    verbalizers: str = "",
    scoring: str = "per_token",
  ):
    super().__init__(config, dataset)
    if not init_from:
      raise ConfigError(
        "Task 'zero_shot' scores with a pretrained language model: set task_kwargs.init_from to "
        "the workdir of a causal_lm or mlm run."
      )
    info = dataset.info
    if "num_classes" not in info:
      raise ConfigError(f"Task 'zero_shot' needs labelled data; {config.data.name!r} has none.")
    self.source = load_finished_run(init_from, dataset)
    pretext = self.source.task
    if isinstance(pretext, NextTokenPredictor):
      kind = zero_shot.CAUSAL
    elif isinstance(pretext, MaskedTokenPredictor):
      kind = zero_shot.PET
    else:
      having = tasks_with(NextTokenPredictor) + tasks_with(MaskedTokenPredictor)
      raise ConfigError(
        f"Zero-shot scoring from init_from={init_from!r} needs a task that predicts next or "
        f"masked tokens (NextTokenPredictor, MaskedTokenPredictor); task "
        f"{self.source.config.task!r} has neither. Tasks that do: {sorted(having)}."
      )
    words = (
      [w.strip() for w in verbalizers.split(",")] if verbalizers else list(info["class_names"])
    )
    if len(words) != int(info["num_classes"]):
      raise ConfigError(
        f"task_kwargs.verbalizers names {len(words)} words for {info['num_classes']} classes "
        f"{list(info['class_names'])}."
      )
    encoder = pretext.encoder_module()
    seq_len = dataset.split(dataset.train_split)["tokens"].shape[1]
    self.prompt = zero_shot.ZeroShotPrompt.build(
      load_tokenizer(info["tokenizer_path"]),
      prompt,
      words,
      kind,
      scoring,
      seq_len,
      encoder.max_length,
    )
    self.pretext = pretext

  def init(self, rng, batch):
    del batch  # the pretraining task's own rows size its parameters
    example = {k: jnp.asarray(v) for k, v in self.source.example().items()}
    return self.pretext.init(rng, example)

  def load_pretrained(self, params, model_state):
    variables = self.source.variables
    return place_like(variables["params"], params), place_like(
      variables["model_state"], model_state
    )

  def wrap_optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    del tx
    return optax.set_to_zero()  # nothing trains (and no optimizer state is kept)

  def loss_fn(self, params, model_state, batch, rng, step):
    del rng, step
    logits = self.logits(params, model_state, batch, None, False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, ({"accuracy": (logits.argmax(-1) == batch["label"]).mean()}, model_state)

  def logits(self, params, model_state, batch, rng, train):
    del rng, train
    tokens = batch["tokens"]
    if self.prompt.kind == zero_shot.PET:
      log_probs = lambda t, p: self.pretext.masked_lm_log_probs(params, model_state, t, p)
      return zero_shot.pet_scores(self.prompt, log_probs, tokens)
    encoder = self.pretext.encoder_module()
    variables = self.pretext.encoder_variables(params, model_state)
    encode = lambda t, v: encoder.apply(variables, t, v, train=False)
    attend = lambda h: encoder.apply(variables, h, method=lambda m, x: m.attend(x))
    return zero_shot.causal_scores(self.prompt, encode, attend, tokens)

  def trainable_parameters(self, params) -> int:
    del params
    return 0

  def export(self, params, directory):
    del params, directory
    return None  # nothing trained: nothing to ship

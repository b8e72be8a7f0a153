"""Supervised fine-tuning of a pretrained text encoder: a new linear head on pooled states,
trained through the same trainer, checkpoints, metrics and registry as pretraining.

  config.task = "classification"
  config.task_kwargs = {"init_from": "/tmp/bert_python_text", "method": "lora"}
  config.data = {"name": "python_packages",
                 "tokenizer_path": "/tmp/bert_python_text/tokenizer.model"}

`init_from` names a pretraining workdir: its `config.json` rebuilds the encoder (the model,
its options and the vocabulary; this config's `model_kwargs` override options such as
dropout) and its latest checkpoint supplies the weights; "" trains `config.model` from
scratch, the baseline every method has to beat. Methods:
  full     every weight trains (with `freeze` and `layer_decay` to shape that);
  linear   only the head trains (the frozen encoder's features: a linear probe);
  lora     the encoder is frozen and LoRA adapters (`lora_*` options) train with the head;
  scratch  the same architecture (and tokenizer) as `init_from`, from random weights: the
           baseline, on identical terms.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from ssl_jax.checkpoint import CheckpointMismatchError
from ssl_jax.data.source import Dataset
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import Task, build_model, mean_over_valid, split_variables
from ssl_jax.adapt import freeze, lora

METHODS = ("full", "linear", "lora", "scratch")
POOLINGS = ("mean", "first")


class TextClassifier(nn.Module):
  """encoder -> pooled hidden state (mean over real tokens, or the first token) -> dropout ->
  linear head."""

  encoder: nn.Module
  num_classes: int
  pooling: str = "mean"
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, valid: jnp.ndarray, train: bool) -> jnp.ndarray:
    hidden = self.encoder(tokens, valid, train=train)
    pooled = mean_over_valid(hidden, valid) if self.pooling == "mean" else hidden[:, 0]
    pooled = nn.Dropout(self.dropout_rate)(pooled, deterministic=not train)
    return nn.Dense(self.num_classes, name="head")(pooled.astype(jnp.float32))


def read_pretraining(workdir: str) -> tuple[ml_collections.ConfigDict, dict[str, Any], str]:
  """(config, params of the latest checkpoint as numpy, checkpoint directory) of a
  pretraining workdir; errors name what is missing."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"init_from={workdir!r}: {config_path} does not exist. Point "
                            "init_from at the workdir of a finished pretraining run.")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  steps = sorted(int(name) for name in os.listdir(directory) if name.isdigit()) if os.path.isdir(
      directory) else []
  if not steps:
    raise FileNotFoundError(f"init_from={workdir!r} has no checkpoint under {directory}.")
  path = os.path.join(directory, str(steps[-1]), "state")
  restored = ocp.StandardCheckpointer().restore(path)
  return config, jax.tree.map(np.asarray, restored["params"]), path


def pretrained_encoder_params(params: dict[str, Any], task: str) -> dict[str, Any]:
  """The encoder's subtree of a pretraining task's params."""
  if task == "causal_lm":
    return params
  if task == "mlm" and "encoder" in params:
    return params["encoder"]
  raise ConfigError(f"Fine-tuning starts from 'mlm' or 'causal_lm' text pretraining; "
                    f"init_from holds a {task!r} run.")


def _check_shapes(pretrained: Any, fresh: Any, source: str) -> None:
  paths = lambda tree: {jax.tree_util.keystr(path): np.shape(leaf)
                        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
  have, want = paths(pretrained), paths(fresh)
  problems = [f"{p}: checkpoint {have.get(p)} vs model {want.get(p)}"
              for p in sorted(set(have) | set(want)) if have.get(p) != want.get(p)]
  if problems:
    raise CheckpointMismatchError(
        f"The encoder in {source} does not match the one this config builds "
        f"({len(problems)} differences, e.g. {problems[:3]}). Use the pretraining run's "
        "tokenizer (config.data.tokenizer_path) and do not override model_kwargs.")


@TASKS.register("classification")
class Classification(Task):
  """Cross entropy of a `TextClassifier` on `batch["label"]`; see the module docstring.

  Options (`config.task_kwargs`): init_from, method, freeze (a `ssl_jax.adapt.freeze`
  strategy), layer_decay, pooling, head_dropout, label_smoothing, lora_rank, lora_alpha,
  lora_dropout, lora_targets.
  """

  modality = "text"

  def __init__(self, config: ml_collections.ConfigDict, dataset: Dataset, init_from: str = "",
               method: str = "full", freeze: str = "none", layer_decay: float = 1.0,
               pooling: str = "mean", head_dropout: float = 0.0,
               label_smoothing: float = 0.0, lora_rank: int = 8, lora_alpha: float = 16.0,
               lora_dropout: float = 0.0,
               lora_targets: str = r"attention/(query|value)$"):
    super().__init__(config, dataset)
    for name, value, valid in (("method", method, METHODS), ("pooling", pooling, POOLINGS)):
      if value not in valid:
        raise ConfigError(f"Unknown config.task_kwargs.{name} {value!r}; valid: {list(valid)}.")
    info = dataset.info
    if "num_classes" not in info:
      raise ConfigError(f"Task 'classification' needs labelled data; {config.data.name!r} has "
                        "no labels. Use e.g. 'python_packages' or 'text_classification_files'.")
    seq_len = dataset.split(dataset.train_split)["tokens"].shape[1]
    self.pretrained = None
    model_config = config
    if init_from:
      model_config, params, source = read_pretraining(init_from)
      pretrained_info = model_config.get("dataset_info", {})
      if pretrained_info.get("vocab_size") != info["vocab_size"]:
        raise ConfigError(
            f"The pretraining run in {init_from!r} has a vocabulary of "
            f"{pretrained_info.get('vocab_size')} pieces, this data {info['vocab_size']}: set "
            f"config.data.tokenizer_path={pretrained_info.get('tokenizer_path')!r}.")
      if method != "scratch":
        self.pretrained = (pretrained_encoder_params(params, model_config.task), source)
      # The fine-tune may change options that keep the shapes (dropout, remat, dtype); a
      # change of shape is caught when the weights are loaded.
      model_config.model_kwargs.update(config.model_kwargs.to_dict())
      seq_len = int(model_config.data.get("seq_len", seq_len))
    self.model = TextClassifier(
        build_model(model_config, vocab_size=info["vocab_size"], max_length=seq_len),
        info["num_classes"], pooling, head_dropout)
    self.pad_id = info["pad_id"]
    self.method, self.freeze_strategy = method, freeze
    self.layer_decay, self.label_smoothing = layer_decay, label_smoothing
    self.lora_config = lora.LoraConfig(lora_rank, lora_alpha, lora_dropout, lora_targets)

  # --- Parameters ---------------------------------------------------------------------------

  def init(self, rng, batch):
    tokens = batch["tokens"]
    variables = self.model.init(rng, tokens, tokens != self.pad_id, train=False)
    params, model_state = split_variables(variables)
    if self.method == "lora":
      layers = lora.find_layers(self.model, variables, tokens, tokens != self.pad_id,
                                train=False)
      params = {**params, "lora": lora.init_adapters(jax.random.fold_in(rng, 1), layers,
                                                     self.lora_config)}
    return params, model_state

  def load_pretrained(self, params: Any) -> Any:
    """`params` with the encoder replaced by the pretrained one (shapes checked)."""
    if self.pretrained is None:
      return params
    encoder, source = self.pretrained
    _check_shapes(encoder, params["encoder"], source)
    loaded = jax.tree.map(lambda new, old: jax.device_put(new.astype(old.dtype), old.sharding),
                          encoder, params["encoder"])
    return {**params, "encoder": loaded}

  @property
  def freeze_strategy_in_use(self) -> str:
    return {"full": self.freeze_strategy, "scratch": self.freeze_strategy,
            "linear": "all_but_head", "lora": r"regex:^encoder/"}[self.method]

  def trainable_parameters(self, params: Any) -> int:
    """How many parameters the optimizer updates (the rest are frozen)."""
    labels = freeze.freeze_labels(params, self.freeze_strategy_in_use)
    return sum(int(np.prod(np.shape(leaf))) for leaf, label in
               zip(jax.tree.leaves(params), jax.tree.leaves(labels)) if label == freeze.TRAINABLE)

  def wrap_optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    strategy = self.freeze_strategy_in_use
    if self.layer_decay != 1.0:
      tx = freeze.layerwise_decay(tx, self.model.encoder.dims["depth"], self.layer_decay)
    if strategy == "none":
      return tx
    return freeze.freeze(tx, lambda params: freeze.freeze_labels(params, strategy))

  # --- Forward --------------------------------------------------------------------------------

  def logits(self, params, model_state, batch, rng: jax.Array | None, train: bool):
    tokens = batch["tokens"]
    params = dict(params)
    adapters = params.pop("lora", None)
    variables = {"params": params, **model_state}
    rngs = {"dropout": rng} if rng is not None else {}
    args = (tokens, tokens != self.pad_id)
    if adapters is None:
      return self.model.apply(variables, *args, train=train, rngs=rngs)
    return lora.apply(self.model, variables, adapters, self.lora_config, *args, train=train,
                      rngs=rngs, dropout_key=rng if train else None)

  def loss_fn(self, params, model_state, batch, rng):
    logits = self.logits(params, model_state, batch, rng, train=True)
    labels = optax.smooth_labels(jax.nn.one_hot(batch["label"], logits.shape[-1]),
                                 self.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, labels).mean()
    accuracy = (logits.argmax(-1) == batch["label"]).mean()
    return loss, ({"accuracy": accuracy}, model_state)

  def represent(self, params, model_state, batch):
    tokens = batch["tokens"]
    valid = tokens != self.pad_id
    hidden = self.model.apply({"params": {k: v for k, v in params.items() if k != "lora"},
                               **model_state}, tokens, valid, False,
                              method=lambda m, t, v, train: m.encoder(t, v, train=train))
    return mean_over_valid(hidden, valid)

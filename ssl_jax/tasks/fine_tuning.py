"""What every fine-tuning task shares, for images and text alike: reading a pretraining run,
the methods (full / linear / lora / scratch), freezing, the supervised loss, and the
semi-supervised objectives that add a loss on unlabelled rows.

A fine-tuning task's params are {"encoder", "head"} (+ "lora" adapters, + "pretext" for the
pretraining task's other modules when its loss is kept), its model state {"encoder": ...}
(batch statistics) (+ "pretext"). Semi-supervised runs read batches made by
`config.label_budget.unlabelled="pair"`: `<field>` is an unlabelled row and
`labelled_<field>` with `label` a labelled one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from ssl_jax.adapt import bottleneck, freeze, lora, prompts, task_weights
from ssl_jax.adapt.semi_supervised import pseudo_label_loss
from ssl_jax.checkpoint import CheckpointMismatchError
from ssl_jax.data.label_budget import LABELLED_PREFIX
from ssl_jax.data.source import Dataset
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import Metrics, PyTree, Task

# Parameter-efficient methods: the encoder is frozen; their parameters live under
# params[<method>] and train with the head.
PEFT_METHODS = ("lora", "adapter", "prefix", "prompt")
METHODS = ("full", "linear", "scratch", "zero_shot") + PEFT_METHODS
SEMI_SUPERVISED = ("none", "pretext", "fixmatch")


def read_pretraining(workdir: str) -> tuple[ml_collections.ConfigDict, dict[str, Any], str]:
  """(config, {"params", "model_state"} of the latest checkpoint as numpy, checkpoint
  directory) of a pretraining workdir; errors name what is missing."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(
      f"init_from={workdir!r}: {config_path} does not exist. Point "
      "init_from at the workdir of a finished pretraining run."
    )
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  steps = (
    sorted(int(name) for name in os.listdir(directory) if name.isdigit())
    if os.path.isdir(directory)
    else []
  )
  if not steps:
    raise FileNotFoundError(f"init_from={workdir!r} has no checkpoint under {directory}.")
  path = os.path.join(directory, str(steps[-1]), "state")
  restored = ocp.StandardCheckpointer().restore(path)
  variables = {
    "params": jax.tree.map(np.asarray, restored["params"]),
    "model_state": jax.tree.map(np.asarray, restored.get("model_state") or {}),
  }
  return config, variables, path


def check_shapes(pretrained: Any, fresh: Any, source: str) -> None:
  """Raises CheckpointMismatchError listing the leaves whose shapes differ."""
  paths = lambda tree: {
    jax.tree_util.keystr(path): np.shape(leaf)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }
  have, want = paths(pretrained), paths(fresh)
  problems = [
    f"{p}: checkpoint {have.get(p)} vs model {want.get(p)}"
    for p in sorted(set(have) | set(want))
    if have.get(p) != want.get(p)
  ]
  if problems:
    raise CheckpointMismatchError(
      f"The encoder in {source} does not match the one this config builds "
      f"({len(problems)} differences, e.g. {problems[:3]}). Use the pretraining run's "
      "data options (e.g. config.data.tokenizer_path) and do not override model_kwargs."
    )


def place_like(value: Any, like: Any) -> Any:
  """`value` (numpy) as `like`'s dtype on `like`'s sharding, leaf by leaf."""
  return jax.tree.map(
    lambda new, old: jax.device_put(np.asarray(new).astype(old.dtype), old.sharding), value, like
  )


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray, smoothing: float = 0.0) -> jnp.ndarray:
  """Mean (label-smoothed) softmax cross entropy of integer labels."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()


class FineTuning(Task):
  """A pretrained encoder plus a new linear head, trained on labels.

  Subclasses build `self.model`-specific pieces and implement `logits`; this class holds the
  options every modality shares (`config.task_kwargs`):
    init_from: pretraining workdir ("" = train `config.model` from scratch).
    method: full | linear | lora | scratch (init_from's network from random weights) |
      zero_shot (text: score label words with the pretrained LM; nothing trains).
    freeze: a `ssl_jax.adapt.freeze` strategy for full fine-tuning.
    label_smoothing.
    lora_rank, lora_alpha, lora_dropout, lora_targets: the adapters of method "lora".
    adapter_size, adapter_targets: method "adapter" (bottleneck adapters after the matched
      layers' outputs; default after each block's attention and MLP outputs).
    prefix_length: method "prefix" (learned keys/values in every self-attention layer).
    prompt_length: method "prompt" (learned input embeddings at reserved positions).
    semi_supervised: none | pretext (the pretraining loss on unlabelled rows, weighted by
      unlabelled_weight) | fixmatch (pseudo-labels of a weak view teach a strong view where
      their confidence reaches pseudo_label_threshold).
  """

  input_key: str = "image"  # the batch field a row's input lives in

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    init_from: str,
    method: str,
    freeze_strategy: str,
    label_smoothing: float,
    lora_config: lora.LoraConfig,
    semi_supervised: str,
    unlabelled_weight: float,
    pseudo_label_threshold: float,
    adapter_config: bottleneck.AdapterConfig | None = None,
    prefix_config: prompts.PrefixConfig | None = None,
    prompt_config: prompts.PromptConfig | None = None,
  ):
    super().__init__(config, dataset)
    for name, value, valid in (
      ("method", method, METHODS),
      ("semi_supervised", semi_supervised, SEMI_SUPERVISED),
    ):
      if value not in valid:
        raise ConfigError(f"Unknown config.task_kwargs.{name} {value!r}; valid: {list(valid)}.")
    if "num_classes" not in dataset.info:
      raise ConfigError(
        f"Task {config.task!r} needs labelled data; {config.data.name!r} has no labels."
      )
    train = dataset.split(dataset.train_split)
    paired = LABELLED_PREFIX + self.input_key in train
    if semi_supervised != "none" and not paired:
      raise ConfigError(
        f"semi_supervised={semi_supervised!r} trains on unlabelled rows too: "
        "set config.label_budget.unlabelled='pair' (and per_class)."
      )
    if semi_supervised == "pretext" and not init_from:
      raise ConfigError(
        "semi_supervised='pretext' keeps the pretraining loss, so it needs "
        "task_kwargs.init_from (a pretraining workdir)."
      )
    self.num_classes = int(dataset.info["num_classes"])
    self.method, self.freeze_strategy = method, freeze_strategy
    self.label_smoothing = label_smoothing
    self.lora_config = lora_config
    self.adapter_config = adapter_config or bottleneck.AdapterConfig()
    self.prefix_config = prefix_config or prompts.PrefixConfig()
    self.prompt_config = prompt_config or prompts.PromptConfig()
    self.semi_supervised, self.unlabelled_weight = semi_supervised, unlabelled_weight
    self.pseudo_label_threshold = pseudo_label_threshold
    self.paired = paired
    self.pretrained_config = None
    self.pretrained = None  # ({"params", "model_state"} as numpy, checkpoint path)
    if init_from:
      self.pretrained_config, variables, source = read_pretraining(init_from)
      if method != "scratch":
        self.pretrained = (variables, source)
    self.pretext: Task | None = None
    # The pretraining task's own heads are kept when its loss is (semi-supervised) or when
    # zero-shot scoring reads its vocabulary head (PET with a masked LM).
    if semi_supervised == "pretext" or (
      method == "zero_shot" and init_from and self.pretrained_config.task == "mlm"
    ):
      pconfig = self.pretext_config(self.pretrained_config)
      self.pretext = TASKS.build(pconfig.task, pconfig.task_kwargs.to_dict(), pconfig, dataset)

  # --- Parameters ---------------------------------------------------------------------------

  def init_model(self, rng: jax.Array, inputs: jnp.ndarray) -> tuple[PyTree, PyTree]:
    """(params {"encoder", "head"}, model_state) of the classifier; see subclasses."""
    raise NotImplementedError

  def model_args(self, inputs: jnp.ndarray) -> tuple[Any, ...]:
    """The positional arguments of `self.model` for `inputs` (before `train`)."""
    return (inputs,)

  def init_peft(self, key: jax.Array, variables: PyTree, inputs: jnp.ndarray) -> PyTree:
    """The parameters of the parameter-efficient method in use, for the model's layers."""
    trace = (self.model, variables, *self.model_args(inputs))
    if self.method == "lora":
      return lora.init_adapters(key, lora.find_layers(*trace, train=False), self.lora_config)
    if self.method == "adapter":
      return bottleneck.init_adapters(
        key, bottleneck.find_layers(*trace, train=False), self.adapter_config
      )
    if self.method == "prefix":
      return prompts.init_prefixes(
        key, prompts.attention_layers(*trace, train=False), self.prefix_config
      )
    return prompts.init_prompts(
      key, prompts.embedding_layers(*trace, train=False), self.prompt_config
    )

  def apply_model(
    self,
    variables: PyTree,
    peft: PyTree | None,
    *args,
    dropout_key: jax.Array | None = None,
    **kwargs,
  ) -> Any:
    """`self.model.apply(variables, *args, **kwargs)` with the method's parameters `peft`
    (None: the plain model)."""
    if peft is None:
      return self.model.apply(variables, *args, **kwargs)
    if self.method == "lora":
      return lora.apply(
        self.model, variables, peft, self.lora_config, *args, dropout_key=dropout_key, **kwargs
      )
    if self.method == "adapter":
      return bottleneck.apply(self.model, variables, peft, *args, **kwargs)
    if self.method == "prefix":
      return prompts.apply_prefixes(self.model, variables, peft, *args, **kwargs)
    return prompts.apply_prompts(
      self.model, variables, peft, *args, start=self.prompt_config.start, **kwargs
    )

  def split_params(self, params: PyTree) -> tuple[PyTree, PyTree | None]:
    """(the classifier's own params, the parameter-efficient method's or None)."""
    own = {k: v for k, v in params.items() if k != "pretext" and k not in PEFT_METHODS}
    return own, params.get(self.method) if self.method in PEFT_METHODS else None

  def init(self, rng, batch):
    inputs = batch[self.input_key]
    params, model_state = self.init_model(rng, inputs)
    if self.method in PEFT_METHODS:
      params = {
        **params,
        self.method: self.init_peft(
          jax.random.fold_in(rng, 1), {"params": params, **model_state}, inputs
        ),
      }
    if self.pretext is not None and not self.pretext_is_encoder():
      pretext_params, pretext_state = self.pretext.init(
        jax.random.fold_in(rng, 2), {self.input_key: inputs}
      )
      params = {**params, "pretext": _without_encoder(pretext_params)}
      if _without_encoder(pretext_state):
        model_state = {**model_state, "pretext": _without_encoder(pretext_state)}
    return params, model_state

  def pretext_config(self, pconfig: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The pretraining config the kept pretext task is rebuilt from; subclasses pin what the
    fine-tuning data would otherwise change (a text model's number of positions)."""
    return pconfig

  def pretext_is_encoder(self) -> bool:
    """Whether the kept pretraining task's params are the encoder itself with no head of its
    own (a causal LM scores the vocabulary with its input embeddings) rather than
    {"encoder", heads...}; its loss then reads `params["encoder"]` as they are."""
    return False

  def encoder_checkpoint(self, variables: dict[str, Any]) -> tuple[Any, Any]:
    """(encoder params, encoder model state) inside a pretraining run's variables."""
    params, model_state = variables["params"], variables["model_state"]
    if "encoder" not in params:
      raise ConfigError(
        f"The pretraining run's params have no 'encoder' (top-level keys {sorted(params)})."
      )
    return params["encoder"], model_state.get("encoder", {})

  def load_pretrained(self, params, model_state):
    if self.pretrained is None:
      return params, model_state
    variables, source = self.pretrained
    encoder, encoder_state = self.encoder_checkpoint(variables)
    check_shapes(encoder, params["encoder"], source)
    params = {**params, "encoder": place_like(encoder, params["encoder"])}
    fresh_state = encoder_state_of(model_state)
    check_shapes(encoder_state, fresh_state, source)
    model_state = with_encoder_state(model_state, place_like(encoder_state, fresh_state))
    if "pretext" in params:
      params = {
        **params,
        "pretext": place_like(_without_encoder(variables["params"]), params["pretext"]),
      }
    if "pretext" in model_state:
      model_state = {
        **model_state,
        "pretext": place_like(_without_encoder(variables["model_state"]), model_state["pretext"]),
      }
    return params, model_state

  @property
  def freeze_strategy_in_use(self) -> str:
    return {
      "full": self.freeze_strategy,
      "scratch": self.freeze_strategy,
      "linear": "all_but_head",
      **{method: r"regex:^encoder/" for method in PEFT_METHODS},
    }[self.method]

  def trainable_parameters(self, params: PyTree) -> int:
    """How many parameters the optimizer updates (the rest are frozen); the pretext heads of
    a semi-supervised run train but are not part of the classifier, so they do not count."""
    if self.method == "zero_shot":
      return 0
    params = {k: v for k, v in params.items() if k != "pretext"}
    labels = freeze.freeze_labels(params, self.freeze_strategy_in_use)
    return sum(
      int(np.prod(np.shape(leaf)))
      for leaf, label in zip(jax.tree.leaves(params), jax.tree.leaves(labels))
      if label == freeze.TRAINABLE
    )

  def export(self, params: PyTree, directory: str) -> dict[str, Any] | None:
    """The trained weights alone (`adapt.task_weights`), pointing at the pretraining
    checkpoint for the rest; nothing for zero-shot (nothing trains)."""
    if self.method == "zero_shot":
      return None
    params = {k: v for k, v in params.items() if k != "pretext"}
    labels = freeze.freeze_labels(params, self.freeze_strategy_in_use)
    base = self.pretrained[1] if self.pretrained is not None else None
    return task_weights.save_task_weights(directory, params, labels, base)

  def wrap_optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    if self.method == "zero_shot":
      return optax.set_to_zero()  # nothing trains (and no optimizer state is kept)
    strategy = self.freeze_strategy_in_use
    if strategy == "none":
      return tx
    # The pretext heads of a semi-supervised run always train.
    return freeze.freeze(
      tx,
      lambda params: {
        **freeze.freeze_labels({k: v for k, v in params.items() if k != "pretext"}, strategy),
        **(
          {"pretext": jax.tree.map(lambda _: freeze.TRAINABLE, params["pretext"])}
          if "pretext" in params
          else {}
        ),
      },
    )

  # --- Loss ---------------------------------------------------------------------------------

  def logits(self, params, model_state, batch, rng: jax.Array | None, train: bool):
    """Class logits of `batch[self.input_key]` (eval mode when not `train`)."""
    logits, _ = self.forward(params, model_state, batch[self.input_key], rng, train)
    return logits

  def forward(self, params, model_state, inputs, rng, train: bool) -> tuple[jnp.ndarray, PyTree]:
    """(logits, model state with updated batch statistics); see subclasses."""
    raise NotImplementedError

  def train_inputs(self, rng: jax.Array, inputs: jnp.ndarray, strength: str) -> jnp.ndarray:
    """The labelled ("weak") or FixMatch "strong" training view of `inputs`. Default: as is."""
    del rng, strength
    return inputs

  def perturb(self, params, model_state, inputs, labels, rng) -> jnp.ndarray:
    """Adversarial training hook: the inputs the supervised loss is taken on. Default: as is."""
    del params, model_state, labels, rng
    return inputs

  def supervised_loss(
    self, params, model_state, inputs, labels, attack_key, forward_key
  ) -> tuple[jnp.ndarray, jnp.ndarray, PyTree]:
    """(cross entropy, logits, new model state) on the labelled inputs, attacked first by
    `perturb` (adversarial training)."""
    inputs = self.perturb(params, model_state, inputs, labels, attack_key)
    logits, model_state = self.forward(params, model_state, inputs, forward_key, True)
    return cross_entropy(logits, labels, self.label_smoothing), logits, model_state

  def loss_fn(self, params, model_state, batch, rng):
    view_key, forward_key, attack_key, unlabelled_key = jax.random.split(rng, 4)
    key = LABELLED_PREFIX + self.input_key
    inputs = batch[key] if self.paired else batch[self.input_key]
    labels = batch["label"]
    inputs = self.train_inputs(view_key, inputs, "weak")
    loss, logits, model_state = self.supervised_loss(
      params, model_state, inputs, labels, attack_key, forward_key
    )
    metrics: Metrics = {"accuracy": (logits.argmax(-1) == labels).mean(), "supervised_loss": loss}
    if self.semi_supervised == "pretext":
      extra, extra_metrics, model_state = self.pretext_loss(
        params, model_state, {self.input_key: batch[self.input_key]}, unlabelled_key
      )
    elif self.semi_supervised == "fixmatch":
      extra, extra_metrics, model_state = self.fixmatch_loss(
        params, model_state, batch[self.input_key], unlabelled_key
      )
    else:
      return loss, (metrics, model_state)
    metrics = {**metrics, **extra_metrics, "unlabelled_loss": extra}
    return loss + self.unlabelled_weight * extra, (metrics, model_state)

  def _pretext_variables(self, params, model_state) -> tuple[PyTree, PyTree]:
    """The pretraining task's (params, model_state) view of ours: its encoder is ours."""
    if self.pretext_is_encoder():
      return params["encoder"], encoder_state_of(model_state)
    pretext_params = {**params["pretext"], "encoder": params["encoder"]}
    pretext_state = {**model_state.get("pretext", {})}
    if encoder_state_of(model_state):
      pretext_state["encoder"] = encoder_state_of(model_state)
    return pretext_params, pretext_state

  def update_targets(self, params, model_state, step):
    """Momentum targets of a kept pretext loss (BYOL, MoCo v3) keep following the encoder."""
    if self.pretext is None or "pretext" not in model_state:
      return model_state
    new_state = self.pretext.update_targets(*self._pretext_variables(params, model_state), step)
    return {**model_state, "pretext": _without_encoder(new_state)}

  def pretext_loss(self, params, model_state, batch, rng):
    """The pretraining task's own loss on unlabelled rows, through the shared encoder."""
    loss, (metrics, new_state) = self.pretext.loss_fn(
      *self._pretext_variables(params, model_state), batch, rng
    )
    if self.pretext_is_encoder():
      model_state = with_encoder_state(model_state, new_state)
    elif "encoder" in new_state:
      model_state = with_encoder_state(model_state, new_state["encoder"])
    if "pretext" in model_state:
      model_state["pretext"] = _without_encoder(new_state)
    return loss, {f"pretext_{k}": v for k, v in metrics.items()}, model_state

  def fixmatch_loss(self, params, model_state, inputs, rng):
    """FixMatch: the weak view's confident predictions label the strong view."""
    weak_key, strong_key, forward_key = jax.random.split(rng, 3)
    weak = self.train_inputs(weak_key, inputs, "weak")
    strong = self.train_inputs(strong_key, inputs, "strong")
    weak_logits, model_state = self.forward(params, model_state, weak, forward_key, True)
    strong_logits, model_state = self.forward(
      params, model_state, strong, jax.random.fold_in(forward_key, 1), True
    )
    loss, metrics = pseudo_label_loss(weak_logits, strong_logits, self.pseudo_label_threshold)
    return loss, metrics, model_state


def encoder_state_of(model_state: dict[str, Any]) -> dict[str, Any]:
  """The encoder's collections ({"batch_stats": ...}) in a classifier's model state, which
  flax lays out by collection first ({"batch_stats": {"encoder": ...}}); pretraining tasks
  keep them by module first ({"encoder": {"batch_stats": ...}}), as this returns them."""
  return {
    collection: tree["encoder"]
    for collection, tree in model_state.items()
    if collection != "pretext" and "encoder" in tree
  }


def with_encoder_state(
  model_state: dict[str, Any], encoder_state: dict[str, Any]
) -> dict[str, Any]:
  """`model_state` with the encoder's collections replaced (inverse of `encoder_state_of`)."""
  model_state = dict(model_state)
  for collection, tree in encoder_state.items():
    model_state[collection] = {**model_state[collection], "encoder": tree}
  return model_state


def _without_encoder(tree: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in tree.items() if k != "encoder"}

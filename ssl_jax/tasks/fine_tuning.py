"""What every fine-tuning task shares, for images and text alike: the pretraining run it starts
from, the method (full / linear / peft / scratch), freezing, and the parts it composes
(`task_kwargs.peft`, `.adversarial`, `.semi_supervised`: see `adapt.peft` and
`adapt.training_parts`).

A fine-tuning task's params are {"encoder", "head"} (+ "peft" for the parameter-efficient
method, + "pretext" for the pretraining task's other parameters when its loss is kept), its
model state the classifier's collections ({"batch_stats": {"encoder": ...}}) (+ "pretext").
The pretraining task is rebuilt by name from the run's config.json and its encoder read
through the `EncoderView` capability, so any pretext with an encoder view fine-tunes the same
way. Semi-supervised runs read batches made by `config.label_budget.unlabelled="pair"`:
`<field>` is an unlabelled row and `labelled_<field>` with `label` a labelled one.
"""

from __future__ import annotations

import abc
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax.adapt import freeze, task_weights
from ssl_jax.adapt.peft import PEFT as PEFT_METHODS
from ssl_jax.adapt.peft import build_peft
from ssl_jax.adapt.training_parts import ADVERSARIAL, SEMI_SUPERVISED
from ssl_jax.capabilities import Represents
from ssl_jax.data.label_budget import LABELLED_PREFIX
from ssl_jax.data.source import Dataset
from ssl_jax.registry import MODELS, ConfigError, build_part
from ssl_jax.runs.finished import FinishedRun, check_source, load_finished_run
from ssl_jax.tasks.base import Metrics, PyTree, Task, without_key
from ssl_jax.tasks.pretrained_weights import check_shapes, place_like

METHODS = ("full", "linear", "peft", "scratch")


def check_fine_tuning_options(options: dict[str, Any]) -> None:
  """Every fine-tuning task's declared check (`TASKS.register(..., check=...)`), before any
  work: the method exists and init_from holds a run with an encoder view."""
  method = options.get("method", "full")
  if method not in METHODS:
    raise ConfigError(f"Unknown config.task_kwargs.method {method!r}; valid: {list(METHODS)}.")
  if options.get("init_from"):
    check_source(options["init_from"])


PEFT, PRETEXT = "peft", "pretext"  # params keys of the PEFT method's and the pretext's params


def model_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fine-tune's `model_kwargs` that differ from its model's defaults: the options it
  changes in the pretrained model (dropout, remat, dtype)."""
  defaults = MODELS.option_defaults(config.model)
  return {
    key: value
    for key, value in config.model_kwargs.to_dict().items()
    if key not in defaults or defaults[key] != value
  }


class FineTuning(Task, Represents):
  """A pretrained encoder plus a new linear head, trained on labels.

  Subclasses build `self.model` (a classifier module with an `encoder` submodule and a
  `head`) from `self.encoder_module()` and implement `forward`; this class holds the options
  every modality shares (`config.task_kwargs`):
    init_from: pretraining workdir ("" = train `config.model` from scratch).
    method: full | linear (only the head) | peft (the `peft` block's method with the head) |
      scratch (init_from's network from random weights: the baseline on identical terms).
    freeze: a `ssl_jax.adapt.freeze` strategy for full fine-tuning.
    label_smoothing.
    peft: {"name": one of `adapt.peft.PEFT`, options...}.
    adversarial: {"name": one of `training_parts.ADVERSARIAL`, options...}.
    semi_supervised: {"name": one of `training_parts.SEMI_SUPERVISED`, options...}.
  """

  input_key: str = "image"  # the batch field a row's input lives in
  # Nested option blocks: (the registry that names their parts, the default part's name).
  nested_parts = {
    "peft": (PEFT_METHODS, "lora"),
    "adversarial": (ADVERSARIAL, "none"),
    "semi_supervised": (SEMI_SUPERVISED, "none"),
  }

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    init_from: str,
    method: str,
    freeze_strategy: str,
    label_smoothing: float,
    peft: dict[str, Any] | None,
    adversarial: dict[str, Any] | None,
    semi_supervised: dict[str, Any] | None,
  ):
    super().__init__(config, dataset)
    peft, adversarial, semi_supervised = (
      dict(block or {"name": self.nested_parts[key][1]})
      for key, block in (
        ("peft", peft),
        ("adversarial", adversarial),
        ("semi_supervised", semi_supervised),
      )
    )
    # The method's name was checked before any work (`check_fine_tuning_options`).
    if "num_classes" not in dataset.info:
      raise ConfigError(
        f"Task {config.task!r} needs labelled data; {config.data.name!r} has no labels."
      )
    self.num_classes = int(dataset.info["num_classes"])
    self.method, self.freeze_strategy = method, freeze_strategy
    self.label_smoothing = label_smoothing
    self.peft = build_peft(peft, self.modality) if method == "peft" else None
    self.adversarial = build_part(
      ADVERSARIAL, adversarial, self.modality, "config.task_kwargs.adversarial"
    )
    self.semi_supervised = build_part(
      SEMI_SUPERVISED, semi_supervised, self.modality, "config.task_kwargs.semi_supervised"
    )
    self.paired = LABELLED_PREFIX + self.input_key in dataset.split(dataset.train_split)
    if self.semi_supervised.active and not self.paired:
      raise ConfigError(
        f"semi_supervised.name={semi_supervised['name']!r} trains on unlabelled rows too: set "
        "config.label_budget.unlabelled='pair' (and per_class)."
      )
    if self.semi_supervised.keeps_pretext and not init_from:
      raise ConfigError(
        "semi_supervised.name='pretext' keeps the pretraining loss, so it needs "
        "task_kwargs.init_from (a pretraining workdir)."
      )
    self.source: FinishedRun | None = None
    if init_from:
      self.source = load_finished_run(init_from, dataset, model_overrides(config))
    # The pretraining task itself, when its loss is kept on the unlabelled rows.
    self.pretext = self.source.task if self.semi_supervised.keeps_pretext else None

  def encoder_module(self) -> nn.Module:
    """The encoder to fine-tune: the pretraining task's, or `config.model` without init_from."""
    if self.source is not None:
      return self.source.task.encoder_module()
    return self.build_scratch_encoder()

  @abc.abstractmethod
  def build_scratch_encoder(self) -> nn.Module:
    """`config.model` for this data (no pretraining run)."""

  # --- Parameters ---------------------------------------------------------------------------

  def init_model(self, rng: jax.Array, inputs: jnp.ndarray) -> tuple[PyTree, PyTree]:
    """(params {"encoder", "head"}, model_state) of the classifier."""
    variables = dict(self.model.init(rng, *self.model_args(inputs), train=False))
    return variables.pop("params"), variables

  def model_args(self, inputs: jnp.ndarray) -> tuple[Any, ...]:
    """The positional arguments of `self.model` for `inputs` (before `train`)."""
    return (inputs,)

  def split_params(self, params: PyTree) -> tuple[PyTree, PyTree | None]:
    """(the classifier's own params, the PEFT method's or None)."""
    own = {k: v for k, v in params.items() if k not in (PRETEXT, PEFT)}
    return own, params.get(PEFT)

  def init(self, rng, batch):
    inputs = batch[self.input_key]
    params, model_state = self.init_model(rng, inputs)
    if self.peft is not None:
      variables = {"params": params, **model_state}
      params = {
        **params,
        PEFT: self.peft.init(
          jax.random.fold_in(rng, 1),
          self.model,
          variables,
          *self.model_args(self.peft_inputs(inputs)),
          train=False,
        ),
      }
    if self.pretext is not None:
      pretext_params, pretext_state = self.pretext.init(
        jax.random.fold_in(rng, 2), {self.input_key: inputs}
      )
      _, (rest_params, rest_state) = self.pretext.split_encoder(pretext_params, pretext_state)
      if rest_params:
        params = {**params, PRETEXT: rest_params}
      if rest_state:
        model_state = {**model_state, PRETEXT: rest_state}
    return params, model_state

  def peft_inputs(self, inputs: jnp.ndarray) -> jnp.ndarray:
    """The inputs as the PEFT-adapted model reads them. Default: as they are."""
    return inputs

  def load_pretrained(self, params, model_state):
    if self.source is None or self.method == "scratch":
      return params, model_state
    encoder = self.source.encoder_variables()
    source = self.source.checkpoint
    check_shapes(encoder["params"], params["encoder"], source)
    params = {**params, "encoder": place_like(encoder["params"], params["encoder"])}
    fresh_state = encoder_state_of(model_state)
    pretrained_state = without_key(encoder, "params")
    check_shapes(pretrained_state, fresh_state, source)
    model_state = with_encoder_state(model_state, place_like(pretrained_state, fresh_state))
    if self.pretext is not None:
      _, (rest_params, rest_state) = self.source.split_encoder()
      if PRETEXT in params:
        params = {**params, PRETEXT: place_like(rest_params, params[PRETEXT])}
      if PRETEXT in model_state:
        model_state = {**model_state, PRETEXT: place_like(rest_state, model_state[PRETEXT])}
    return params, model_state

  @property
  def freeze_strategy_in_use(self) -> str:
    if self.method == "linear":
      return "all_but_head"
    if self.method == "peft":
      return r"regex:^encoder/"
    return self.freeze_strategy

  def trainable_parameters(self, params: PyTree) -> int:
    """How many parameters the optimizer updates (the rest are frozen); the pretext heads of
    a semi-supervised run train but are not part of the classifier, so they do not count."""
    params = without_key(params, PRETEXT)
    labels = freeze.freeze_labels(params, self.freeze_strategy_in_use)
    return sum(
      int(np.prod(np.shape(leaf)))
      for leaf, label in zip(jax.tree.leaves(params), jax.tree.leaves(labels))
      if label == freeze.TRAINABLE
    )

  def export(self, params: PyTree, directory: str) -> dict[str, Any] | None:
    """The trained weights alone (`adapt.task_weights`), pointing at the pretraining
    checkpoint for the rest."""
    params = without_key(params, PRETEXT)
    labels = freeze.freeze_labels(params, self.freeze_strategy_in_use)
    base = self.source.checkpoint if self.source is not None and self.method != "scratch" else None
    return task_weights.save_task_weights(directory, params, labels, base)

  def wrap_optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    strategy = self.freeze_strategy_in_use
    if strategy == "none":
      return tx

    # The pretext heads of a semi-supervised run always train.
    def labels(params):
      own = freeze.freeze_labels(without_key(params, PRETEXT), strategy)
      if PRETEXT in params:
        own[PRETEXT] = jax.tree.map(lambda _: freeze.TRAINABLE, params[PRETEXT])
      return own

    return freeze.freeze(tx, labels)

  # --- Loss ---------------------------------------------------------------------------------

  def logits(self, params, model_state, batch, rng: jax.Array | None, train: bool):
    logits, _ = self.forward(params, model_state, batch[self.input_key], rng, train)
    return logits

  @abc.abstractmethod
  def forward(self, params, model_state, inputs, rng, train: bool) -> tuple[jnp.ndarray, PyTree]:
    """(logits, model state with updated batch statistics)."""

  def train_inputs(self, rng: jax.Array, inputs: jnp.ndarray, strength: str) -> jnp.ndarray:
    """The labelled ("weak") or FixMatch "strong" training view of `inputs`. Default: as is."""
    del rng, strength
    return inputs

  def loss_fn(self, params, model_state, batch, rng, step):
    view_key, forward_key, attack_key, unlabelled_key = jax.random.split(rng, 4)
    inputs = batch[LABELLED_PREFIX + self.input_key] if self.paired else batch[self.input_key]
    labels = batch["label"]
    inputs = self.train_inputs(view_key, inputs, "weak")
    loss, logits, model_state = self.adversarial.supervised_loss(
      self, params, model_state, inputs, labels, attack_key, forward_key
    )
    metrics: Metrics = {"accuracy": (logits.argmax(-1) == labels).mean(), "supervised_loss": loss}
    if not self.semi_supervised.active:
      return loss, (metrics, model_state)
    extra, extra_metrics, model_state = self.semi_supervised.loss(
      self, params, model_state, batch[self.input_key], unlabelled_key, step
    )
    metrics = {**metrics, **extra_metrics, "unlabelled_loss": extra}
    return loss + self.semi_supervised.weight * extra, (metrics, model_state)

  # --- The kept pretext loss ---------------------------------------------------------------------

  def _pretext_variables(self, params, model_state) -> tuple[PyTree, PyTree]:
    """The pretraining task's (params, model_state) view of ours: its encoder is ours."""
    encoder = {"params": params["encoder"], **encoder_state_of(model_state)}
    rest = (params.get(PRETEXT, {}), model_state.get(PRETEXT, {}))
    return self.pretext.merge_encoder(encoder, rest)

  def after_update(self, params, model_state, step):
    """Momentum targets of a kept pretext loss (BYOL, MoCo v3) keep following the encoder."""
    if self.pretext is None or PRETEXT not in model_state:
      return params, model_state
    _, new_state = self.pretext.after_update(*self._pretext_variables(params, model_state), step)
    return params, {**model_state, PRETEXT: self._pretext_rest_state(params, new_state)}

  def _pretext_rest_state(self, params, pretext_state) -> PyTree:
    pretext_params = self._pretext_variables(params, {})[0]
    return self.pretext.split_encoder(pretext_params, pretext_state)[1][1]

  def pretext_loss(self, params, model_state, batch, rng, step):
    """The pretraining task's own loss on unlabelled rows, through the shared encoder."""
    pretext_params, pretext_state = self._pretext_variables(params, model_state)
    loss, (metrics, new_state) = self.pretext.loss_fn(
      pretext_params, pretext_state, batch, rng, step
    )
    encoder, (_, rest_state) = self.pretext.split_encoder(pretext_params, new_state)
    model_state = with_encoder_state(model_state, without_key(encoder, "params"))
    if PRETEXT in model_state:
      model_state = {**model_state, PRETEXT: rest_state}
    return loss, {f"pretext_{k}": v for k, v in metrics.items()}, model_state


def encoder_state_of(model_state: dict[str, Any]) -> dict[str, Any]:
  """The encoder's collections ({"batch_stats": ...}) in a classifier's model state, which
  flax lays out by collection first ({"batch_stats": {"encoder": ...}}); an encoder's own
  variables are by collection too, as this returns them."""
  return {
    collection: tree["encoder"]
    for collection, tree in model_state.items()
    if collection != PRETEXT and "encoder" in tree
  }


def with_encoder_state(
  model_state: dict[str, Any], encoder_state: dict[str, Any]
) -> dict[str, Any]:
  """`model_state` with the encoder's collections replaced (inverse of `encoder_state_of`)."""
  model_state = dict(model_state)
  for collection, tree in encoder_state.items():
    model_state[collection] = {**model_state[collection], "encoder": tree}
  return model_state

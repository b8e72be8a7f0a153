"""What every vision pretext task shares: named modules with their own parameter subtrees,
augmented views, momentum (EMA) targets updated in the train step, and the online probe."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax.capabilities import EncoderView, OnlineProbe
from ssl_jax.data.augment import augment_batch, view_configs
from ssl_jax.data.source import Dataset
from ssl_jax.losses import weighted_mean
from ssl_jax.models.heads import LinearClassifier
from ssl_jax.registry import ConfigError
from ssl_jax.tasks.base import Metrics, PyTree, Task, build_model, without_key

TARGET = "target"  # model_state key holding the momentum copies of `target_modules`.


def cosine_momentum(
  step: jax.Array, total_steps: int, base: float, final: float = 1.0
) -> jax.Array:
  """BYOL's schedule: `base` at step 0 rising to `final` at `total_steps` along a half cosine."""
  progress = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
  return final - (final - base) * (jnp.cos(jnp.pi * progress) + 1) / 2


def ema(target: PyTree, online: PyTree, momentum: jax.Array) -> PyTree:
  """momentum * target + (1 - momentum) * online, leaf by leaf."""
  return jax.tree.map(lambda t, o: momentum * t + (1 - momentum) * o, target, online)


def l2_normalize(x: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
  """x / max(||x||, eps) along the last axis, with a finite gradient at x = 0 (unlike norm())."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def cosine_similarity(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  return jnp.sum(l2_normalize(a) * l2_normalize(b), axis=-1)


def _run(
  module: nn.Module, variables: dict[str, Any], inputs: Any, train: bool, **kwargs
) -> tuple[Any, dict[str, Any]]:
  """Applies `module`; in training, mutable collections (batch stats) come back updated."""
  collections = [k for k in variables if k != "params"]
  if train and collections:
    out, new = module.apply(variables, inputs, train=True, mutable=collections, **kwargs)
    return out, dict(new)
  return module.apply(variables, inputs, train=train, **kwargs), {
    k: v for k, v in variables.items() if k != "params"
  }


class VisionTask(Task, EncoderView, OnlineProbe):
  """Base of the image tasks.

  Subclasses put their flax modules in `self.modules` (the encoder is always "encoder"), each
  with its own subtree of params and model state, so heads can be added, frozen, or copied
  into a momentum target by name. `target_modules` with `base_momentum` turns on the EMA
  target: its weights live in `model_state["target"]` and follow the online weights by the
  cosine momentum schedule after every optimizer update.
  """

  modality = "image"
  target_modules: Sequence[str] = ()
  head_chain: Sequence[str] = ()  # Modules after the encoder, each fed the previous output.
  represent_with_target = False  # DINO evaluates the teacher.

  def __init__(
    self, config: ml_collections.ConfigDict, dataset: Dataset, base_momentum: float = 0.0
  ):
    super().__init__(config, dataset)
    self.views = view_configs(config.get("augment", {}))
    self.encoder = build_model(config)
    self.modules: dict[str, nn.Module] = {"encoder": self.encoder}
    self.base_momentum = base_momentum
    self.online_probe = bool(config.get("online_probe", False))
    if self.online_probe:
      num_classes = dataset.info.get("num_classes")
      if not num_classes or "label" not in dataset.split(dataset.train_split):
        raise ConfigError(
          f"config.online_probe needs labels in the training split; dataset "
          f"{config.data.name!r} has none."
        )
      self.modules["online_probe"] = LinearClassifier(num_classes)

  # --- Applying modules ----------------------------------------------------------------------

  def apply(
    self, name: str, params: PyTree, model_state: PyTree, inputs: Any, train: bool = True, **kwargs
  ) -> tuple[Any, dict[str, Any]]:
    """(output, that module's new model state) of module `name` with the online weights."""
    variables = {"params": params[name], **model_state.get(name, {})}
    return _run(self.modules[name], variables, inputs, train, **kwargs)

  def apply_target(
    self, name: str, model_state: PyTree, inputs: Any, train: bool = True, **kwargs
  ) -> tuple[Any, dict[str, Any]]:
    """Like `apply` with the momentum target's weights; its output carries no gradient."""
    out, new = _run(self.modules[name], model_state[TARGET][name], inputs, train, **kwargs)
    return jax.lax.stop_gradient(out), new

  def init_module(
    self,
    name: str,
    rng: jax.Array,
    inputs: Any,
    params: dict[str, Any],
    model_state: dict[str, Any],
    **kwargs,
  ) -> Any:
    """Initialises module `name` on `inputs` into `params`/`model_state`; returns its output."""
    variables = dict(self.modules[name].init(rng, inputs, train=False, **kwargs))
    params[name] = variables.pop("params")
    if variables:
      model_state[name] = variables
    out, _ = _run(
      self.modules[name], {"params": params[name], **variables}, inputs, False, **kwargs
    )
    return out

  def init(self, rng, batch):
    params: dict[str, Any] = {}
    model_state: dict[str, Any] = {}
    keys = iter(jax.random.split(rng, 16))
    features = self.init_module("encoder", next(keys), batch["image"], params, model_state)
    self.init_heads(keys, batch, features, params, model_state)
    if self.online_probe:
      self.init_module("online_probe", next(keys), features, params, model_state)
    if self.target_modules:
      # The target starts as an exact copy of the online modules.
      model_state[TARGET] = {
        name: {"params": params[name], **model_state.get(name, {})} for name in self.target_modules
      }
    return params, model_state

  def init_heads(self, keys, batch, features, params, model_state) -> None:
    """Initialises the task's modules after the encoder (`keys` yields fresh RNG keys).

    Default: the modules of `head_chain` in order, each on the previous one's output.
    """
    for name in self.head_chain:
      features = self.init_module(name, next(keys), features, params, model_state)

  def forward(
    self, names: Sequence[str], params: PyTree, model_state: PyTree, inputs: Any, train: bool = True
  ) -> tuple[list[Any], PyTree]:
    """Runs online modules in a chain (e.g. encoder -> projector -> predictor); returns every
    module's output and the model state with their batch stats updated."""
    outputs = []
    for name in names:
      inputs, new = self.apply(name, params, model_state, inputs, train)
      model_state = merge_states(model_state, {name: new})
      outputs.append(inputs)
    return outputs, model_state

  def forward_target(
    self, names: Sequence[str], model_state: PyTree, inputs: Any
  ) -> tuple[Any, PyTree]:
    """Runs the momentum target's modules in a chain (train mode, as the reference code
    does); returns the last output (no gradient) and the updated model state."""
    for name in names:
      inputs, new = self.apply_target(name, model_state, inputs)
      model_state = merge_states(model_state, target={name: new})
    return inputs, model_state

  # --- Views, targets, probe -----------------------------------------------------------------

  def two_views(self, rng: jax.Array, images: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Two views from the `view1` and `view2` pipelines of `config.augment`."""
    rng_1, rng_2 = jax.random.split(rng)
    return (
      augment_batch(rng_1, images, self.views["view1"]),
      augment_batch(rng_2, images, self.views["view2"]),
    )

  def predict_momentum_targets(
    self, params: PyTree, model_state: PyTree, rng: jax.Array, images: jnp.ndarray
  ):
    """BYOL's and MoCo v3's forward: two views through the online encoder -> projector ->
    predictor and through the momentum target (`target_modules`).

    Returns (view 1's encoder features, (prediction 1, prediction 2), (target 1, target 2),
    model_state); a loss pairs prediction 1 with target 2 and prediction 2 with target 1.
    """
    view_1, view_2 = self.two_views(rng, images)
    online = ("encoder", "projector", "predictor")
    (features_1, _, prediction_1), model_state = self.forward(online, params, model_state, view_1)
    (_, _, prediction_2), model_state = self.forward(online, params, model_state, view_2)
    target_1, model_state = self.forward_target(self.target_modules, model_state, view_1)
    target_2, model_state = self.forward_target(self.target_modules, model_state, view_2)
    return features_1, (prediction_1, prediction_2), (target_1, target_2), model_state

  @classmethod
  def schedules_use_total_steps(cls) -> bool:
    return bool(cls.target_modules)  # their cosine momentum runs to total_steps

  def momentum(self, step: jax.Array) -> jax.Array:
    return cosine_momentum(step, self.config.total_steps, self.base_momentum)

  def after_update(self, params, model_state, step):
    """Moves the momentum targets towards the updated online weights."""
    if not self.target_modules:
      return params, model_state
    momentum = self.momentum(step)
    target = {
      name: {
        **model_state[TARGET][name],
        "params": ema(model_state[TARGET][name]["params"], params[name], momentum),
      }
      for name in self.target_modules
    }
    return params, {**model_state, TARGET: target}

  def with_probe(
    self,
    loss: jax.Array,
    metrics: Metrics,
    params: PyTree,
    features: jnp.ndarray,
    batch: dict[str, jax.Array],
  ) -> tuple[jax.Array, Metrics]:
    """Adds the online probe's cross entropy on detached `features` (no-op when disabled)."""
    if not self.online_probe:
      return loss, metrics
    logits, _ = self.apply("online_probe", params, {}, jax.lax.stop_gradient(features))
    labels = batch["label"]
    # Unlabelled records (label -1, e.g. STL-10's unlabelled split) train the encoder only.
    labelled = (labels >= 0).astype(jnp.float32)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    probe_loss = weighted_mean(per_example, labelled)
    accuracy = weighted_mean(jnp.argmax(logits, -1) == labels, labelled)
    return loss + probe_loss, {
      **metrics,
      "online_probe_loss": probe_loss,
      "online_probe_accuracy": accuracy,
    }

  def encoder_variables(self, params: PyTree, model_state: PyTree) -> dict[str, Any]:
    """The encoder's variables that evaluation and fine-tuning start from: the online
    encoder, or the momentum teacher for methods that evaluate it (DINO)."""
    if self.represent_with_target:
      return model_state[TARGET]["encoder"]
    return {"params": params["encoder"], **model_state.get("encoder", {})}

  def encoder_module(self) -> nn.Module:
    return self.encoder

  def split_encoder(self, params, model_state):
    encoder = {"params": params["encoder"], **model_state.get("encoder", {})}
    return encoder, (without_key(params, "encoder"), without_key(model_state, "encoder"))

  def merge_encoder(self, encoder_variables, rest):
    params, model_state = rest
    collections = without_key(encoder_variables, "params")
    model_state = {**model_state, "encoder": collections} if collections else dict(model_state)
    return {**params, "encoder": encoder_variables["params"]}, model_state

  def represent(self, params, model_state, batch):
    out, _ = _run(self.encoder, self.encoder_variables(params, model_state), batch["image"], False)
    return out

  def probe_logits(
    self, params: PyTree, model_state: PyTree, batch: dict[str, jax.Array]
  ) -> jax.Array:
    """Logits of the online probe on the online encoder's (eval-mode) features."""
    if not self.online_probe:
      raise ConfigError("This run has no online probe; set config.online_probe=True.")
    variables = {"params": params["encoder"], **model_state.get("encoder", {})}
    features, _ = _run(self.encoder, variables, batch["image"], False)
    logits, _ = self.apply("online_probe", params, {}, features, train=False)
    return logits


def merge_states(
  model_state: PyTree, online: dict[str, Any] | None = None, target: dict[str, Any] | None = None
) -> PyTree:
  """The model state with the named modules' collections (batch stats) replaced: `online` for
  the online modules, `target` for the momentum copies (whose params are kept)."""
  new = dict(model_state)
  for name, collections in (online or {}).items():
    if collections:
      new[name] = collections
  if target:
    new[TARGET] = {**new[TARGET]}
    for name, collections in target.items():
      new[TARGET][name] = {**new[TARGET][name], **collections}
  return new

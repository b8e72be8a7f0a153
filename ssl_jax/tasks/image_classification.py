"""Fine-tuning a pretrained image encoder: a new linear head on its pooled features, trained
through the same trainer, checkpoints, metrics and registry as pretraining.

  config.task = "image_classification"
  config.task_kwargs = {"init_from": "/tmp/vicreg_digits", "method": "full"}
  config.data = {"name": "digits"}

`init_from` names a vision pretraining workdir: its `config.json` rebuilds the pretraining task
and its latest checkpoint gives the encoder's weights and batch statistics (the network the task
evaluates: DINO's teacher). The methods and parts are `FineTuning`'s; LoRA adapts the
convolutions and Dense layers its `targets` match (default: every convolution of a ResNet, the
query and value projections of a ViT), bottleneck adapters follow the layers their `targets`
match (default: a ViT's attention and MLP outputs), and prefix tuning works on a ViT.
`config.augment` is the labelled view (view1) and FixMatch's strong view (view2).
Adversarial training (`task_kwargs.adversarial.name` = fgsm | pgd) trains on attacked images
(Madry et al. 2018), the attack seeing the model in eval mode.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from ssl_jax.adapt import adversarial
from ssl_jax.capabilities import Attackable
from ssl_jax.data.augment import augment_batch, view_configs
from ssl_jax.data.source import Dataset
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import build_model
from ssl_jax.tasks.fine_tuning import FineTuning, check_fine_tuning_options, encoder_state_of


class ImageClassifier(nn.Module):
  """encoder (pooled features) -> linear head."""

  encoder: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool) -> jnp.ndarray:
    features = self.encoder(images, train=train)
    return nn.Dense(self.num_classes, name="head")(features.astype(jnp.float32))


@TASKS.register("image_classification", check=check_fine_tuning_options)
class ImageClassification(FineTuning, Attackable):
  """Cross entropy of an `ImageClassifier` on `batch["label"]` (see the module docstring)."""

  modality = "image"
  input_key = "image"

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    init_from: str = "",
    method: str = "full",
    freeze: str = "none",
    label_smoothing: float = 0.0,
    peft: dict[str, Any] | None = None,
    adversarial: dict[str, Any] | None = None,
    semi_supervised: dict[str, Any] | None = None,
  ):
    super().__init__(
      config,
      dataset,
      init_from,
      method,
      freeze,
      label_smoothing,
      peft,
      adversarial,
      semi_supervised,
    )
    self.model = ImageClassifier(self.encoder_module(), self.num_classes)
    self.views = view_configs(config.get("augment", {}))

  def build_scratch_encoder(self):
    return build_model(self.config)

  # --- Forward --------------------------------------------------------------------------------

  def forward(self, params, model_state, images, rng, train):
    del rng  # no dropout in the image encoders
    params, peft = self.split_params(params)
    # A linear probe reads the frozen encoder as it is: batch statistics stay as pretrained.
    train = train and self.method != "linear"
    classifier_state = {k: v for k, v in model_state.items() if k != "pretext"}
    variables = {"params": params, **classifier_state}
    mutable = list(classifier_state) if train else False
    if peft is None:
      out = self.model.apply(variables, images, train=train, mutable=mutable)
    else:
      out = self.peft.apply(self.model, variables, peft, images, train=train, mutable=mutable)
    if not mutable:
      return out, model_state
    logits, updated = out
    return logits, {**model_state, **updated}

  def train_inputs(self, rng, images, strength):
    view = self.views["view1" if strength == "weak" else "view2"]
    return augment_batch(rng, images, view)

  def represent(self, params, model_state, batch):
    variables = {"params": params["encoder"], **encoder_state_of(model_state)}
    return self.model.encoder.apply(variables, batch["image"], train=False)

  # --- Attacks (the robustness evaluator) -------------------------------------------------------

  @classmethod
  def check_attack(cls, attack, norm, eps):
    if attack not in adversarial.IMAGE_ATTACKS:
      raise ConfigError(
        f"Unknown robustness attack {attack!r} for images; valid: {list(adversarial.IMAGE_ATTACKS)}."
      )
    adversarial.check_budget(norm, eps)

  def attacked_logits(
    self, params, model_state, batch, key, *, attack, norm, eps, steps, step_size
  ):
    logits_of = lambda x: self.logits(params, model_state, {"image": x}, None, False)
    attacked = adversarial.attack_images(
      logits_of,
      batch["image"],
      batch["label"],
      key,
      kind=attack,
      eps=eps,
      norm=norm,
      steps=steps,
      step_size=step_size,
    )
    return logits_of(attacked)

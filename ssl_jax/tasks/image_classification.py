"""Fine-tuning a pretrained image encoder: a new linear head on its pooled features, trained
through the same trainer, checkpoints, metrics and registry as pretraining.

  config.task = "image_classification"
  config.task_kwargs = {"init_from": "/tmp/vicreg_digits", "method": "full"}
  config.data = {"name": "digits"}

`init_from` names a vision pretraining workdir: its `config.json` rebuilds the encoder (model
and options) and its latest checkpoint gives the weights and batch statistics (DINO's teacher,
the network it evaluates). The methods and semi-supervised objectives are `FineTuning`'s; LoRA
adapts convolutions and Dense layers chosen by `lora_targets` (default: every convolution of a
ResNet, the query and value projections of a ViT); bottleneck adapters follow the layers
chosen by `adapter_targets` (default: a ViT's attention and MLP outputs), and prefix tuning
works on a ViT. `config.augment` is the labelled view
(view1) and FixMatch's strong view (view2). `adversarial` = fgsm | pgd trains on attacked
images (Madry et al. 2018): within `adv_eps` in the `adv_norm` ball, `adv_steps` steps of
`adv_step_size` from a random start, the attack seeing the model in eval mode.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.adapt import adversarial, bottleneck, lora, prompts
from ssl_jax.data.augment import augment_batch, view_configs
from ssl_jax.data.source import Dataset
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import build_model, split_variables
from ssl_jax.tasks.fine_tuning import FineTuning, cross_entropy, encoder_state_of

ATTACKS = ("none", "fgsm", "pgd")
DEFAULT_IMAGE_LORA_TARGETS = r"Conv_\d+$|attention/(query|value)$"


class ImageClassifier(nn.Module):
  """encoder (pooled features) -> linear head."""

  encoder: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool) -> jnp.ndarray:
    features = self.encoder(images, train=train)
    return nn.Dense(self.num_classes, name="head")(features.astype(jnp.float32))


@TASKS.register("image_classification")
class ImageClassification(FineTuning):
  """Cross entropy of an `ImageClassifier` on `batch["label"]` (see the module docstring).

  Options (`config.task_kwargs`), beside `FineTuning`'s: adversarial, adv_eps, adv_norm,
  adv_steps, adv_step_size.
  """

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
    lora_rank: int = 4,
    lora_alpha: float = 8.0,
    lora_dropout: float = 0.0,
    lora_targets: str = DEFAULT_IMAGE_LORA_TARGETS,
    adapter_size: int = 16,
    adapter_targets: str = r"(attention/out|mlp_out)$",
    prefix_length: int = 10,
    semi_supervised: str = "none",
    unlabelled_weight: float = 1.0,
    pseudo_label_threshold: float = 0.95,
    adversarial: str = "none",
    adv_eps: float = 0.1,
    adv_norm: str = "linf",
    adv_steps: int = 5,
    adv_step_size: float = 0.03,
  ):
    if method in ("zero_shot", "prompt"):
      raise ConfigError(
        f"method={method!r} works on token sequences; image classification "
        "has full, linear, scratch, lora, adapter and (ViT) prefix."
      )
    if adversarial not in ATTACKS:
      raise ConfigError(
        f"Unknown config.task_kwargs.adversarial {adversarial!r}; valid: {list(ATTACKS)}."
      )
    super().__init__(
      config,
      dataset,
      init_from,
      method,
      freeze,
      label_smoothing,
      lora.LoraConfig(lora_rank, lora_alpha, lora_dropout, lora_targets),
      semi_supervised,
      unlabelled_weight,
      pseudo_label_threshold,
      bottleneck.AdapterConfig(adapter_size, adapter_targets),
      prompts.PrefixConfig(prefix_length),
    )
    model_config = config
    if init_from:
      model_config = self.pretrained_config.copy_and_resolve_references()
      if not TASKS.get(model_config.task).modality == "image":
        raise ConfigError(
          f"Task 'image_classification' starts from image pretraining; "
          f"init_from={init_from!r} holds a {model_config.task!r} run."
        )
      model_config.model_kwargs.update(config.model_kwargs.to_dict())
    self.model = ImageClassifier(build_model(model_config), self.num_classes)
    self.views = view_configs(config.get("augment", {}))
    self.attack = dict(
      kind=adversarial, eps=adv_eps, norm=adv_norm, steps=adv_steps, step_size=adv_step_size
    )
    if adversarial != "none":
      adversarial_check(adv_norm, adv_eps)

  # --- Parameters ---------------------------------------------------------------------------

  def init_model(self, rng, images):
    return split_variables(self.model.init(rng, images, train=False))

  def encoder_checkpoint(self, variables):
    if TASKS.get(self.pretrained_config.task).represent_with_target:
      teacher = variables["model_state"]["target"]["encoder"]
      return teacher["params"], {k: v for k, v in teacher.items() if k != "params"}
    return super().encoder_checkpoint(variables)

  # --- Forward --------------------------------------------------------------------------------

  def forward(self, params, model_state, images, rng, train):
    del rng  # no dropout in the image encoders
    params, peft = self.split_params(params)
    # A linear probe reads the frozen encoder as it is: batch statistics stay as pretrained.
    train = train and self.method != "linear"
    classifier_state = {k: v for k, v in model_state.items() if k != "pretext"}
    variables = {"params": params, **classifier_state}
    mutable = [k for k in classifier_state] if train else False
    out = self.apply_model(variables, peft, images, train=train, mutable=mutable)
    if not mutable:
      return out, model_state
    logits, updated = out
    return logits, {**model_state, **updated}

  def train_inputs(self, rng, images, strength):
    view = self.views["view1" if strength == "weak" else "view2"]
    return augment_batch(rng, images, view)

  def perturb(self, params, model_state, images, labels, rng):
    if self.attack["kind"] == "none":
      return images
    return attack_images(
      lambda x: self.logits(params, model_state, {"image": x}, None, False),
      images,
      labels,
      rng,
      **self.attack,
    )

  def represent(self, params, model_state, batch):
    variables = {"params": params["encoder"], **encoder_state_of(model_state)}
    return self.model.encoder.apply(variables, batch["image"], train=False)


def adversarial_check(norm: str, eps: float) -> None:
  if norm not in adversarial.NORMS:
    raise ConfigError(f"Unknown attack norm {norm!r}; valid: {list(adversarial.NORMS)}.")
  if eps < 0:
    raise ConfigError(f"The attack budget eps must be >= 0; got {eps}.")


def attack_images(
  logits_fn,
  images: jnp.ndarray,
  labels: jnp.ndarray,
  rng: jax.Array,
  *,
  kind: str,
  eps: float,
  norm: str,
  steps: int,
  step_size: float,
) -> jnp.ndarray:
  """FGSM or PGD (random start) images against `logits_fn` within the budget; the model's
  weights get no gradient through the attack."""

  def loss_of(x):
    return cross_entropy(logits_fn(x), labels)

  if kind == "fgsm":
    adversarial_images = adversarial.fgsm(loss_of, images, eps, norm)
  else:
    adversarial_images = adversarial.pgd(loss_of, images, eps, step_size, steps, norm, key=rng)
  return jax.lax.stop_gradient(adversarial_images)

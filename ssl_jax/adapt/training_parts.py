"""The parts a fine-tune composes beside its supervised loss, each behind a registry and set as
one nested block of `config.task_kwargs` ({"name": ..., options...}):

  adversarial      how the labelled batch is attacked before the loss: none, fgsm / pgd on
                   pixels (Madry et al. 2018), freelb / embedding_pgd on token embeddings
                   (Zhu et al. 2020);
  semi_supervised  a loss on the unlabelled rows: none, pretext (the pretraining task's own
                   loss through the shared encoder), fixmatch (Sohn et al. 2020).

A part works with any classifier of its modalities through the hooks of `FineTuning`
(`forward`, `logits`, `train_inputs`, `pretext_loss`, and for text `embedding_shape` and the
`embedding_delta` argument of `forward`). A new part is one class registered here.
"""

from __future__ import annotations

import abc
from typing import Any

import jax

from ssl_jax.adapt import adversarial as attacks
from ssl_jax.adapt.semi_supervised import pseudo_label_loss
from ssl_jax.losses import cross_entropy
from ssl_jax.registry import ConfigError, Part, Registry

PyTree = Any
ADVERSARIAL: Registry[Any] = Registry("adversarial training")
SEMI_SUPERVISED: Registry[Any] = Registry("semi-supervised objective")


# --- Adversarial training -------------------------------------------------------------------


class Adversarial(Part):
  """How the labelled batch is attacked before the supervised loss."""

  @abc.abstractmethod
  def supervised_loss(self, task, params, model_state, inputs, labels, attack_key, forward_key):
    """(cross entropy, logits, new model state) of `task` on attacked `inputs`."""


@ADVERSARIAL.register("none")
class NoAttack(Adversarial):
  """Clean inputs."""

  def supervised_loss(self, task, params, model_state, inputs, labels, attack_key, forward_key):
    del attack_key
    logits, model_state = task.forward(params, model_state, inputs, forward_key, True)
    return cross_entropy(logits, labels, task.label_smoothing), logits, model_state


class _PixelAttack(Adversarial):
  modalities = ("image",)
  kind = ""

  def __init__(self, eps: float = 0.1, norm: str = "linf", steps: int = 5, step_size: float = 0.03):
    attacks.check_budget(norm, eps)
    self.options = dict(kind=self.kind, eps=eps, norm=norm, steps=steps, step_size=step_size)

  def supervised_loss(self, task, params, model_state, inputs, labels, attack_key, forward_key):
    # The attack sees the model in eval mode; training then runs on the attacked images.
    logits_of = lambda x: task.logits(params, model_state, {task.input_key: x}, None, False)
    attacked = attacks.attack_images(logits_of, inputs, labels, attack_key, **self.options)
    logits, model_state = task.forward(params, model_state, attacked, forward_key, True)
    return cross_entropy(logits, labels, task.label_smoothing), logits, model_state


@ADVERSARIAL.register("fgsm")
class FGSMTraining(_PixelAttack):
  """One signed-gradient step of size eps (steps and step_size are unused)."""

  kind = "fgsm"


@ADVERSARIAL.register("pgd")
class PGDTraining(_PixelAttack):
  """`steps` projected steps of `step_size` inside the eps-ball from a random start."""

  kind = "pgd"


class _EmbeddingAttack(Adversarial):
  modalities = ("text",)
  mode = ""

  def __init__(self, eps: float = 0.3, steps: int = 2, step_size: float = 0.15):
    if eps < 0 or steps < 1:
      raise ConfigError(
        f"Embedding-space adversarial training needs eps >= 0 and steps >= 1; got "
        f"eps={eps}, steps={steps}."
      )
    self.eps, self.steps, self.step_size = eps, steps, step_size

  def supervised_loss(self, task, params, model_state, inputs, labels, attack_key, forward_key):
    # Every ascent step sees the same dropout masks (one forward key).
    def loss_of(delta):
      logits, state = task.forward(
        params, model_state, inputs, forward_key, True, embedding_delta=delta
      )
      return cross_entropy(logits, labels, task.label_smoothing), (logits, state)

    shape, mask = task.embedding_shape(inputs)
    loss, (logits, model_state) = attacks.embedding_adversarial_loss(
      loss_of, shape, mask, self.eps, self.step_size, self.steps, attack_key, self.mode
    )
    return loss, logits, model_state


@ADVERSARIAL.register("freelb")
class FreeLB(_EmbeddingAttack):
  """The mean loss over the ascent steps on the token embeddings (L2 per example)."""

  mode = "freelb"


@ADVERSARIAL.register("embedding_pgd")
class EmbeddingPGD(_EmbeddingAttack):
  """The loss at the last PGD step on the token embeddings (L2 per example)."""

  mode = "pgd"


# --- Semi-supervised objectives --------------------------------------------------------------


class SemiSupervised(Part):
  """A loss on the unlabelled rows (`config.label_budget.unlabelled="pair"`), times `weight`."""

  active = True  # whether there is a loss on the unlabelled rows at all
  keeps_pretext = False  # whether the pretraining task's heads are kept and trained
  weight = 0.0

  @abc.abstractmethod
  def loss(self, task, params, model_state, inputs, rng, step):
    """(unlabelled loss, metrics, new model state) on the unlabelled `inputs`."""


@SEMI_SUPERVISED.register("none")
class LabelledOnly(SemiSupervised):
  """Only the labelled rows train."""

  active = False

  def loss(self, task, params, model_state, inputs, rng, step):
    raise AssertionError("semi_supervised 'none' adds no loss")


@SEMI_SUPERVISED.register("pretext")
class PretextLoss(SemiSupervised):
  """The pretraining task's own loss on the unlabelled rows, through the shared encoder."""

  keeps_pretext = True

  def __init__(self, weight: float = 1.0):
    self.weight = weight

  def loss(self, task, params, model_state, inputs, rng, step):
    return task.pretext_loss(params, model_state, {task.input_key: inputs}, rng, step)


@SEMI_SUPERVISED.register("fixmatch")
class FixMatch(SemiSupervised):
  """The weak view's predictions with confidence >= `threshold` label the strong view."""

  modalities = ("image",)  # text has no strong view yet

  def __init__(self, weight: float = 1.0, threshold: float = 0.95):
    if not 0.0 <= threshold <= 1.0:
      raise ConfigError(f"semi_supervised.threshold must be in [0, 1]; got {threshold}.")
    self.weight, self.threshold = weight, threshold

  def loss(self, task, params, model_state, inputs, rng, step):
    del step
    weak_key, strong_key, forward_key = jax.random.split(rng, 3)
    weak = task.train_inputs(weak_key, inputs, "weak")
    strong = task.train_inputs(strong_key, inputs, "strong")
    weak_logits, model_state = task.forward(params, model_state, weak, forward_key, True)
    strong_logits, model_state = task.forward(
      params, model_state, strong, jax.random.fold_in(forward_key, 1), True
    )
    loss, metrics = pseudo_label_loss(weak_logits, strong_logits, self.threshold)
    return loss, metrics, model_state

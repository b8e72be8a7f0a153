"""What a task can do, declared: small abstract interfaces a task class inherits.

Evaluators and fine-tuning use a task only through these. Each evaluator registers the
capabilities it needs (`EVALUATORS.register(name, requires=(...))`) and `validate_config`
checks the pairing against the task *class* before any data is read, so a config that pairs,
say, the `masked_lm` evaluator with `simclr` stops at once with a message naming the evaluator,
the task, the missing capability and the tasks that have it. A new task gains an evaluator by
inheriting the capability and implementing its methods; nothing is probed at evaluation time.
"""

from __future__ import annotations

import abc
from typing import Any

import flax.linen as nn
import jax

from ssl_jax.registry import TASKS  # filled by ssl_jax.tasks' imports; read at call time

PyTree = Any
Batch = dict[str, jax.Array]


class Capability(abc.ABC):  # noqa: B024  (a marker base: the capabilities hold the methods)
  """Base of the capability interfaces; `description` completes "a task that ..."."""

  description: str = ""


class Represents(Capability):
  """Frozen features for the feature evaluators (kNN, linear probe)."""

  description = "gives frozen features (represent)"

  @abc.abstractmethod
  def represent(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
    """[batch, dim] features: no augmentation, inference mode."""


class EncoderView(Represents):
  """The encoder a fine-tune starts from, as a module and its variables.

  An image encoder maps `(images, train=...)` to pooled features [B, D]; a text encoder maps
  `(tokens, valid, train=...)` to hidden states [B, L, D] and projects hidden states onto the
  vocabulary with `attend` (tied embeddings), which zero-shot scoring of a causal LM uses.
  """

  description = "exposes its encoder (encoder_module, encoder_variables)"

  @abc.abstractmethod
  def encoder_module(self) -> nn.Module:
    """The encoder as a standalone flax module (no parent)."""

  @abc.abstractmethod
  def encoder_variables(self, params: PyTree, model_state: PyTree) -> dict[str, Any]:
    """Flax variables ({"params": ..., collections...}) of `encoder_module()` inside the
    task's (params, model_state): what evaluation and fine-tuning read."""

  @abc.abstractmethod
  def split_encoder(
    self, params: PyTree, model_state: PyTree
  ) -> tuple[dict[str, Any], tuple[PyTree, PyTree]]:
    """(variables of the encoder the loss trains, (the other params, the other model state)):
    the slot a fine-tune's encoder fills when it keeps this task's loss (semi-supervised).
    Usually `encoder_variables`; DINO evaluates its teacher but trains its student."""

  @abc.abstractmethod
  def merge_encoder(
    self, encoder_variables: dict[str, Any], rest: tuple[PyTree, PyTree]
  ) -> tuple[PyTree, PyTree]:
    """The inverse of `split_encoder`: the task's (params, model_state)."""


class MaskedTokenPredictor(Capability):
  """Predicts masked tokens (BERT): the `masked_lm` evaluator."""

  description = "predicts masked tokens (masked_predictions)"

  @abc.abstractmethod
  def masked_predictions(
    self, params: PyTree, model_state: PyTree, batch: Batch, rng: jax.Array, train: bool
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Masks `batch` with the task's own masking: (logits [B, K, V], targets [B, K],
    weights [B, K])."""

  @abc.abstractmethod
  def masked_lm_log_probs(
    self, params: PyTree, model_state: PyTree, tokens: jax.Array, positions: jax.Array
  ) -> jax.Array:
    """[B, V] log-probabilities of the token at `positions` [B] of unmasked `tokens` [B, L]
    (PET zero-shot scoring)."""


class PairPredictor(Capability):
  """Tells whether B follows A in a sentence-pair row (NSP / SOP): the `pair_prediction`
  evaluator."""

  description = "predicts the relation of a sentence pair (pair_predictions)"

  @abc.abstractmethod
  def pair_predictions(
    self, params: PyTree, model_state: PyTree, batch: Batch, rng: jax.Array
  ) -> jax.Array:
    """[B, 2] eval-mode pair logits of `batch` (tokens, token_types) as the task sees it
    (masked as in training with `rng`); class 1 = random next sentence / swapped order."""


class TokenLabeller(Capability):
  """Tags every token (BIO): the `token_classification` evaluator."""

  description = "tags every token (tag_predictions)"

  @abc.abstractmethod
  def tag_predictions(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
    """[B, L] eval-mode tag indices at the positions of `batch["tokens"]`."""


class NextTokenPredictor(Capability):
  """Predicts the next token (GPT): the `causal_lm` and `lm_samples` evaluators."""

  description = "predicts next tokens (next_token_predictions, sampling_model)"

  @abc.abstractmethod
  def next_token_predictions(
    self, params: PyTree, model_state: PyTree, batch: Batch, rng: jax.Array, train: bool
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(logits [B, L-1, V], targets [B, L-1], weights [B, L-1])."""

  @abc.abstractmethod
  def sampling_model(self, params: PyTree) -> tuple[nn.Module, PyTree]:
    """(decoder with a key/value cache, its params) for `ssl_jax.models.sampling.generate`."""


class SpanTargetPredictor(Capability):
  """Predicts corrupted spans (T5): the `span_corruption` evaluator."""

  description = "predicts corrupted spans (target_predictions)"

  @abc.abstractmethod
  def target_predictions(
    self, params: PyTree, model_state: PyTree, batch: Batch, rng: jax.Array, train: bool
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Corrupts `batch`: (logits [B, T, V], targets [B, T], weights [B, T])."""


class ReplacedTokenDetector(Capability):
  """ELECTRA's generator and discriminator: the `replaced_token_detection` evaluator."""

  description = "detects replaced tokens (replaced_token_predictions)"

  @abc.abstractmethod
  def replaced_token_predictions(
    self, params: PyTree, model_state: PyTree, batch: Batch, rng: jax.Array, train: bool
  ) -> dict[str, jax.Array]:
    """generator_logits/targets/weights at the masked positions, discriminator_logits, labels
    (1 = replaced) and token_weights (real tokens)."""


class Classifier(Capability):
  """Class logits of labelled inputs: the `classification` evaluator."""

  description = "classifies (logits, trainable_parameters)"

  @abc.abstractmethod
  def logits(
    self, params: PyTree, model_state: PyTree, batch: Batch, rng: jax.Array | None, train: bool
  ) -> jax.Array:
    """[B, classes] logits (inference mode unless `train`)."""

  @abc.abstractmethod
  def trainable_parameters(self, params: PyTree) -> int:
    """How many parameters the optimizer updates."""


class Attackable(Classifier):
  """A classifier that can be attacked white-box: the `robustness` evaluator."""

  description = "classifies and can be attacked (attacked_logits)"

  @classmethod
  @abc.abstractmethod
  def check_attack(cls, attack: str, norm: str, eps: float) -> None:
    """Raises ConfigError if this kind of classifier cannot be attacked so (before any work)."""

  @abc.abstractmethod
  def attacked_logits(
    self,
    params: PyTree,
    model_state: PyTree,
    batch: Batch,
    key: jax.Array,
    *,
    attack: str,
    norm: str,
    eps: float,
    steps: int,
    step_size: float,
  ) -> jax.Array:
    """Eval-mode logits after an attack on the cross entropy of `batch["label"]`."""

  @staticmethod
  def attack_column(attack: str, norm: str, eps: float) -> str:
    """The robustness table's column name for one attack budget."""
    return f"{attack} acc @ {norm} eps={eps:g}"


class OnlineProbe(Capability):
  """A linear probe trained on detached features in the train step (`config.online_probe`)."""

  description = "trains an online probe (probe_logits)"

  @abc.abstractmethod
  def probe_logits(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
    """[B, classes] logits of the online probe on eval-mode features."""


class RewardPolicy(Capability):
  """A policy fine-tuned on rewards, with its frozen reference: the `reward` evaluator."""

  description = "samples and scores completions against a reference (policy_samples)"

  @abc.abstractmethod
  def policy_samples(
    self,
    params: PyTree,
    batch: Batch,
    rng: jax.Array,
    group_size: int,
    temperature: float | None = None,
  ) -> dict[str, jax.Array]:
    """Per completion of `group_size` samples per prompt of `batch`, drawn at `temperature`
    (None: the policy's own; 0: greedy) (prompts x group_size
    rows): "reward" and "reward/<name>" per reward, "length" (tokens), "kl" (to the reference,
    sequence level), "reference_nll" and "policy_nll" (summed over the completion), and
    "completions" [rows, C] tokens. `params` may be the reference's (`reference_params`)."""

  @abc.abstractmethod
  def reference_params(self) -> PyTree:
    """The frozen reference policy's parameters."""

  @abc.abstractmethod
  def describe(self, prompt: Any, completion: Any) -> tuple[str, str]:
    """(prompt text, completion text) of one row's tokens, for printed samples."""


def missing_capabilities(task_class: type, required: tuple[type[Capability], ...]) -> list:
  """The capabilities of `required` that `task_class` does not declare."""
  return [capability for capability in required if not issubclass(task_class, capability)]


def tasks_with(capability: type[Capability]) -> list[str]:
  """The registered task names whose class declares `capability`."""
  return sorted(name for name in TASKS.names() if issubclass(TASKS.get(name), capability))


def describe_missing(what: str, task_name: str, missing: list[type[Capability]]) -> str:
  """The error line for a pairing that cannot work: names `what` (an evaluator or option),
  the task, the first missing capability and the registered tasks that have it."""
  capability = missing[0]
  having = tasks_with(capability)
  return (
    f"{what} needs a task that {capability.description} (capability "
    f"{capability.__name__}); task {task_name!r} lacks it. Tasks that have it: {having}."
  )

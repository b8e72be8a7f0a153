"""The learner contract of the active-learning loop, and the `linear_head` learner.

Each round the loop hands a learner the labelled pool indices and their revealed labels; the
learner trains from the pretrained encoder and returns its test accuracy with what the next
query may read about the pool (`provides`: some of features, probs, mc_probs). A learner
registered in `LEARNERS` is one file; its constructor's keyword options are its config
options (`config.active.learner_kwargs`), and it declares in `warm_start` whether it can
start a round from the previous round's weights.

`linear_head`: the frozen pretrained features (standardized with the pool's statistics), a
linear softmax head trained with dropout on its inputs (full batch, Adam, `steps` steps, an L2
penalty `l2` on the weights as in sklearn's objective). Monte-Carlo dropout inference then is
exact and cheap: the encoder, the deterministic part, ran once; each of the `mc_samples`
dropout masks is the same for every pool example (masks [S, 1, D]), so the samples differ by
mask alone, as BALD's estimate requires. The labelled set is a 0/1 weight over the whole pool,
so every round of every budget runs one compiled program.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import os
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.errors import ConfigError
from ssl_jax.files import write_npz
from ssl_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class RoundInputs:
  """What one round trains on."""

  round: int
  labelled: np.ndarray  # [K] pool indices, in the order they were labelled
  labels: np.ndarray  # [K] their revealed labels
  directory: str  # this round's directory (checkpoints, weights)
  previous: str | None  # the previous round's directory (warm start), None in round 0
  seed: int


@dataclasses.dataclass(frozen=True)
class Fitted:
  test_accuracy: float
  outputs: dict[str, np.ndarray]  # the pool fields the learner provides


@dataclasses.dataclass(frozen=True)
class PoolData:
  """The pool (the train split, labels hidden from the learner) and the test split."""

  dataset: Any  # ssl_jax.data.source.Dataset
  features: dict[str, np.ndarray]  # pretrained features of "train" (the pool) and "test"
  test_labels: np.ndarray
  num_classes: int
  init_from: str


class Learner(abc.ABC):
  """Trains on a round's labels from the pretrained encoder (see the module docstring)."""

  provides: ClassVar[tuple[str, ...]] = ()
  warm_start: ClassVar[bool] = False

  def __init__(self, data: PoolData, config: Any):
    self.data, self.config = data, config

  @classmethod
  def check(cls, options: dict[str, Any], config: Any) -> None:
    """Checks `options` against the active-learning config before any work (the registry has
    already checked their names and types); raises ConfigError. Most learners need nothing."""
    del options, config

  @abc.abstractmethod
  def fit(self, inputs: RoundInputs, warm_start: bool) -> Fitted:
    """Trains (from the previous round's weights when `warm_start`) and evaluates."""


LEARNERS: Registry[type[Learner]] = Registry("active-learning learner")


@functools.partial(jax.jit, static_argnames=("num_classes", "steps", "mc_samples"))
def _train_head(
  features, labels, weights, test_features, init, key, l2, learning_rate, dropout,
  num_classes: int, steps: int, mc_samples: int,
):  # fmt: skip
  """(head params, test predictions, pool probs, pool MC probs)."""
  keep = 1.0 - dropout
  targets = jax.nn.one_hot(labels, num_classes)
  count = jnp.maximum(weights.sum(), 1.0)

  def loss_of(params, mask):
    w, b = params
    log_probs = jax.nn.log_softmax((features * mask) @ w + b)
    ce = -jnp.sum(weights * jnp.sum(targets * log_probs, -1)) / count
    return ce + 0.5 * l2 * jnp.sum(w * w) / count

  tx = optax.adam(learning_rate)

  def step(carry, step_key):
    params, opt_state = carry
    mask = jax.random.bernoulli(step_key, keep, features.shape) / keep
    grads = jax.grad(loss_of)(params, mask)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  train_key, mc_key = jax.random.split(key)
  (params, _), _ = jax.lax.scan(step, (init, tx.init(init)), jax.random.split(train_key, steps))
  w, b = params
  masks = jax.random.bernoulli(mc_key, keep, (mc_samples, 1, features.shape[1])) / keep
  mc_probs = jax.nn.softmax((features[None] * masks) @ w + b, -1)
  return params, jnp.argmax(test_features @ w + b, -1), jax.nn.softmax(features @ w + b), mc_probs


@LEARNERS.register("linear_head")
class LinearHead(Learner):
  """A linear head with input dropout on the frozen pretrained features."""

  provides = ("features", "probs", "mc_probs")
  warm_start = True

  @classmethod
  def check(cls, options: dict[str, Any], config: Any) -> None:
    del config
    if float(options.get("dropout", 0.5)) >= 1.0:
      raise ConfigError(
        f"config.active.learner_kwargs.dropout={options['dropout']} drops every feature; "
        "it must be in [0, 1)."
      )

  def __init__(
    self,
    data: PoolData,
    config: Any,
    steps: int = 300,
    learning_rate: float = 1e-2,
    l2: float = 1.0,
    dropout: float = 0.5,
    mc_samples: int = 20,
  ):
    super().__init__(data, config)
    self.steps, self.learning_rate, self.l2 = steps, learning_rate, l2
    self.dropout, self.mc_samples = dropout, mc_samples
    pool, test = data.features["train"], data.features["test"]
    mean, std = pool.mean(0), pool.std(0) + 1e-6
    self.pool, self.test = (pool - mean) / std, (test - mean) / std

  def fit(self, inputs: RoundInputs, warm_start: bool) -> Fitted:
    size, dim = self.pool.shape
    weights, labels = np.zeros(size, np.float32), np.zeros(size, np.int32)
    weights[inputs.labelled], labels[inputs.labelled] = 1.0, inputs.labels
    init = (
      np.zeros((dim, self.data.num_classes), np.float32),
      np.zeros(self.data.num_classes, np.float32),
    )
    if warm_start and inputs.previous is not None:
      with np.load(os.path.join(inputs.previous, "head.npz")) as saved:
        init = (saved["kernel"], saved["bias"])
    (w, b), predictions, probs, mc_probs = _train_head(
      self.pool, labels, weights, self.test, init, jax.random.key(inputs.seed), self.l2,
      self.learning_rate, self.dropout, num_classes=self.data.num_classes, steps=self.steps,
      mc_samples=self.mc_samples,
    )  # fmt: skip
    write_npz(
      os.path.join(inputs.directory, "head.npz"), dict(kernel=np.asarray(w), bias=np.asarray(b))
    )
    accuracy = float(np.mean(np.asarray(predictions) == self.data.test_labels))
    outputs = dict(
      features=self.data.features["train"], probs=np.asarray(probs), mc_probs=np.asarray(mc_probs)
    )
    return Fitted(accuracy, outputs)

"""Supervised fine-tuning of a pretrained text encoder: a new linear head on pooled states,
trained through the same trainer, checkpoints, metrics and registry as pretraining.

  config.task = "classification"
  config.task_kwargs = {"init_from": "/tmp/bert_python_text", "method": "peft",
                        "peft": {"name": "lora", "rank": 8}}
  config.data = {"name": "python_packages",
                 "tokenizer_path": "/tmp/bert_python_text/tokenizer.model"}

`init_from` names a pretraining workdir of any task with an encoder view (mlm, causal_lm,
span_corruption: the T5 encoder, electra: the discriminator): its `config.json` rebuilds the
pretraining task, whose encoder this task wraps, and its latest checkpoint supplies the
weights; "" trains `config.model` from scratch, the baseline every method has to beat. Methods
(`FineTuning`): full (with `freeze` and `layer_decay` to shape it), linear (the frozen
encoder's features: a linear probe), peft (the `peft` block: lora, adapter, prefix, prompt),
scratch (init_from's architecture and tokenizer from random weights: the baseline on identical
terms). Text adversarial training is in embedding space (`adversarial.name` = freelb |
embedding_pgd); the semi-supervised objective `pretext` keeps the pretraining loss.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax.adapt import adversarial as attacks
from ssl_jax.adapt import freeze
from ssl_jax.capabilities import Attackable
from ssl_jax.data.source import Dataset
from ssl_jax.losses import cross_entropy
from ssl_jax.models.transformer import TextEmbedding, TransformerEncoder
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import build_model, mean_over_valid
from ssl_jax.tasks.fine_tuning import PRETEXT, FineTuning, check_fine_tuning_options
from ssl_jax.tasks.pretrained_weights import check_shapes, place_like

POOLINGS = ("mean", "first", "pooler")


class TextClassifier(nn.Module):
  """encoder -> pooled hidden state (mean over real tokens, the first token, or BERT's pooler:
  tanh of a dense layer on the first token, `BertForSequenceClassification`'s layout) ->
  dropout -> linear head."""

  encoder: nn.Module
  num_classes: int
  pooling: str = "mean"
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(
    self,
    tokens: jnp.ndarray,
    valid: jnp.ndarray,
    token_types: jnp.ndarray | None = None,
    train: bool = False,
  ) -> jnp.ndarray:
    hidden = self.encoder(tokens, valid, train=train, **_types(token_types))
    pooled = mean_over_valid(hidden, valid) if self.pooling == "mean" else hidden[:, 0]
    if self.pooling == "pooler":
      pooled = jnp.tanh(nn.Dense(hidden.shape[-1], name="pooler")(pooled))
    pooled = nn.Dropout(self.dropout_rate)(pooled, deterministic=not train)
    return nn.Dense(self.num_classes, name="head")(pooled.astype(jnp.float32))


class TextFineTuning(FineTuning):
  """A text encoder fine-tuned with a `TextClassifier`: the options, forward pass and
  embedding perturbation every text fine-tuning task shares (`Classification` on row labels,
  `TokenClassification` on tags); see `FineTuning` for the shared options. Text-only options:
  layer_decay, pooling, head_dropout.
  """

  modality = "text"
  input_key = "tokens"

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    init_from: str = "",
    method: str = "full",
    freeze: str = "none",
    layer_decay: float = 1.0,
    pooling: str = "mean",
    head_dropout: float = 0.0,
    label_smoothing: float = 0.0,
    peft: dict[str, Any] | None = None,
    adversarial: dict[str, Any] | None = None,
    semi_supervised: dict[str, Any] | None = None,
  ):
    if pooling not in POOLINGS:
      raise ConfigError(f"Unknown config.task_kwargs.pooling {pooling!r}; valid: {list(POOLINGS)}.")
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
    info = dataset.info
    self.pad_id, self.mask_id = info["pad_id"], info.get("mask_id")
    self.sep_id = info.get("sep_id", info.get("eos_id"))
    self.model = TextClassifier(self.encoder_module(), self.num_classes, pooling, head_dropout)
    self.layer_decay = layer_decay
    # Sentence-pair rows feed their token types to an encoder with a type table; one without
    # (a plain MLM run) still sees the pair's [SEP] boundary.
    encoder = self.model.encoder
    self.pair_rows = info.get("num_token_types", 0) >= 2 and (
      isinstance(encoder, TransformerEncoder) and encoder.num_token_types >= 2
    )

  def load_pretrained(self, params, model_state):
    """The encoder's weights (`FineTuning`), and with pooling="pooler" the source's own
    pooler when it has one (BERT's pretraining: the NSP head's), as transformers'
    `BertForSequenceClassification.from_pretrained` starts."""
    params, model_state = super().load_pretrained(params, model_state)
    source = self.source.variables["params"] if self.source is not None else {}
    if self.method != "scratch" and "pooler" in params and "pooler" in source:
      check_shapes(source["pooler"], params["pooler"], self.source.checkpoint)
      params = {**params, "pooler": place_like(source["pooler"], params["pooler"])}
    return params, model_state

  def build_scratch_encoder(self):
    tokens = self.dataset.split(self.dataset.train_split)["tokens"]
    types = {"num_token_types": n} if (n := self.dataset.info.get("num_token_types", 0)) else {}
    return build_model(
      self.config, vocab_size=self.dataset.info["vocab_size"], max_length=tokens.shape[1], **types
    )

  def model_args(self, tokens):
    valid = tokens != self.pad_id
    return (
      (tokens, valid, pair_token_types(tokens, self.sep_id)) if self.pair_rows else (tokens, valid)
    )

  def wrap_optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    if self.layer_decay != 1.0:
      tx = freeze.layerwise_decay(tx, self.model.encoder.dims["depth"], self.layer_decay)
    return super().wrap_optimizer(tx)

  # --- Forward --------------------------------------------------------------------------------

  def forward(self, params, model_state, tokens, rng, train, embedding_delta=None):
    """(logits, model state); `embedding_delta` [batch, length, width] is added to the token
    embeddings (adversarial training)."""
    if embedding_delta is not None:
      with nn.intercept_methods(_add_to_embeddings(embedding_delta)):
        return self.forward(params, model_state, tokens, rng, train)
    params, peft = self.split_params(params)
    variables = {"params": params, **{k: v for k, v in model_state.items() if k != PRETEXT}}
    rngs = {"dropout": rng} if (rng is not None and train) else {}
    if peft is None:
      return self.model.apply(
        variables, *self.model_args(tokens), train=train, rngs=rngs
      ), model_state
    tokens = self.peft.prepare_tokens(tokens, self.mask_id)
    logits = self.peft.apply(
      self.model,
      variables,
      peft,
      *self.model_args(tokens),
      train=train,
      rngs=rngs,
      dropout_key=rng if train else None,
    )
    return logits, model_state

  def embedding_shape(self, tokens: jnp.ndarray) -> tuple[tuple[int, ...], jnp.ndarray]:
    """(the shape of a perturbation of the token embeddings, its [B, L, 1] mask of real
    tokens): what embedding-space attacks perturb."""
    shape = tokens.shape + (self.model.encoder.embedding_width,)
    return shape, (tokens != self.pad_id)[..., None].astype(jnp.float32)

  def represent(self, params, model_state, batch):
    tokens = batch["tokens"]
    valid = tokens != self.pad_id
    types = pair_token_types(tokens, self.sep_id) if self.pair_rows else None
    hidden = self.model.apply(
      {"params": self.split_params(params)[0], **model_state},
      tokens,
      valid,
      method=lambda m, t, v: m.encoder(t, v, train=False, **_types(types)),
    )
    return mean_over_valid(hidden, valid)


@TASKS.register("classification", check=check_fine_tuning_options)
class Classification(TextFineTuning, Attackable):
  """Cross entropy of a `TextClassifier` on `batch["label"]` (see the module docstring), a
  classifier the `classification` and `robustness` evaluators read."""

  # --- Attacks (the robustness evaluator): PGD on the token embeddings ---------------------------

  @classmethod
  def check_attack(cls, attack, norm, eps):
    if attack != "pgd" or norm != "l2":
      raise ConfigError(
        f"Text is attacked in embedding space with attack='pgd', norm='l2'; got "
        f"attack={attack!r}, norm={norm!r}."
      )
    attacks.check_budget(norm, eps)

  @staticmethod
  def attack_column(attack, norm, eps):
    return f"embedding {attack} acc @ {norm} eps={eps:g}"

  def attacked_logits(
    self, params, model_state, batch, key, *, attack, norm, eps, steps, step_size
  ):
    """Eval-mode logits after an embedding-space PGD attack (L2, per example, random start)
    on the cross entropy of the labels."""
    del attack, norm  # checked: embedding PGD under L2
    tokens, labels = batch["tokens"], batch["label"]

    def loss_of(delta):
      logits, _ = self.forward(params, model_state, tokens, None, False, embedding_delta=delta)
      return cross_entropy(logits, labels), logits

    shape, mask = self.embedding_shape(tokens)
    _, logits = attacks.embedding_adversarial_loss(
      loss_of, shape, mask, eps, step_size, steps, key, "pgd"
    )
    return jax.lax.stop_gradient(logits)


def pair_token_types(tokens: jnp.ndarray, sep_id: int) -> jnp.ndarray:
  """[B, L] int32 token types of `[CLS] A [SEP] B [SEP]` rows: 0 through the first [SEP],
  1 after it (padding too, which attention never reads)."""
  separators = (tokens == sep_id).astype(jnp.int32)
  return (jnp.cumsum(separators, axis=1) - separators > 0).astype(jnp.int32)


def _types(token_types: jnp.ndarray | None) -> dict[str, jnp.ndarray]:
  """The encoder's `token_types` keyword when there are types."""
  return {} if token_types is None else {"token_types": token_types}


def _add_to_embeddings(delta: jnp.ndarray):
  """An interceptor adding `delta` to the output of the encoder's token embedding."""

  def add(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, TextEmbedding) and context.method_name == "__call__":
      return out + delta.astype(out.dtype)
    return out

  return add

"""BERT's pretraining objective on sentence-pair rows: masked language modelling plus a binary
pair head (next-sentence prediction, BERT; sentence-order prediction, ALBERT).

  config.task = "bert_pretraining"
  config.data = {"name": "python_pairs", "objective": "sop"}
  config.model_kwargs = {"post_norm": True, ...}   # num_token_types comes from the data

The rows (`ssl_jax.data.sentence_pairs`) are `[CLS] A [SEP] B [SEP]` with token types and a
`pair_label` (1 = random next sentence / swapped order). The loss is the MLM cross entropy
plus `pair_weight` times the pair cross entropy (BERT sums them: `pair_weight = 1`). The pair
head is BERT's: a tanh "pooler" dense layer on the [CLS] state, then a 2-way linear layer;
names and shapes match `BertForPreTraining` (`ssl_jax.models.huggingface`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.capabilities import PairPredictor
from ssl_jax.data.source import Dataset
from ssl_jax.losses import cross_entropy, weighted_accuracy, weighted_cross_entropy
from ssl_jax.models.hf_bert import bert_pretraining_from_hf
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.runs.model_source import Architecture, register_architecture
from ssl_jax.tasks.base import require_columns, split_variables
from ssl_jax.tasks.mlm import MaskedLM, bert_mask, masked_lm_head

PAIR_KEYS = ("tokens", "token_types", "pair_label")


class BertPretrainingModel(nn.Module):
  """Encoder + BERT's MLM head at the masked positions + the pooled pair head."""

  encoder: nn.Module

  def setup(self):
    self.head = masked_lm_head(self.encoder)
    self.pooler = nn.Dense(self.encoder.dims["width"], name="pooler")
    self.pair_head = nn.Dense(2, name="pair_head")

  def __call__(
    self,
    tokens: jnp.ndarray,
    valid: jnp.ndarray,
    masked_positions: jnp.ndarray,
    train: bool = True,
    token_types: jnp.ndarray | None = None,
  ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(MLM logits [B, K, V] at the masked positions, pair logits [B, 2])."""
    hidden = self.encoder(tokens, valid, train=train, token_types=token_types)
    masked = jnp.take_along_axis(hidden, masked_positions[..., None], axis=1)
    pooled = jnp.tanh(self.pooler(hidden[:, 0]))
    return self.head(masked, self.encoder.attend), self.pair_head(pooled).astype(jnp.float32)


# A model directory of BertForPreTraining is a run of this task (`init_from` everywhere).
register_architecture(
  "BertForPreTraining",
  Architecture(
    "bert_pretraining",
    "transformer_encoder",
    bert_pretraining_from_hf,
    fields={"token_types": ((), "int32"), "pair_label": ((), "int32")},
    per_position=("token_types",),
  ),
)


@TASKS.register("bert_pretraining")
class BertPretraining(MaskedLM, PairPredictor):
  """MLM + NSP/SOP on pair rows. Options: those of `mlm` (mask_rate, mask_prob, random_prob,
  max_predictions, masking) and pair_weight (the pair loss's weight; 0 leaves only MLM, on the
  same pair rows: the ablation that isolates the pair objective)."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    pair_weight: float = 1.0,
    **mlm_options,
  ):
    require_columns(config, dataset, PAIR_KEYS, "'python_pairs' or 'text_file_pairs'")
    if pair_weight < 0:
      raise ConfigError(f"config.task_kwargs.pair_weight={pair_weight} must be >= 0.")
    super().__init__(config, dataset, **mlm_options)
    if self.augment.cfg.active:
      raise ConfigError(
        "config.augment is not supported on sentence-pair rows (deleting or shuffling tokens "
        "would move them across the A / B boundary); leave it unset."
      )
    if self.encoder.num_token_types < 2:
      raise ConfigError(
        f"config.model_kwargs.num_token_types={self.encoder.num_token_types}: pair rows need "
        "at least 2 token types (leave it unset to take the data's)."
      )
    self.model = BertPretrainingModel(self.encoder)
    self.pair_weight = pair_weight
    self.pair_objective = dataset.info.get("pair_objective", "pair")

  def init(self, rng, batch):
    tokens = batch["tokens"]
    positions = jnp.zeros((tokens.shape[0], self.mask_options["max_predictions"]), jnp.int32)
    variables = self.model.init(
      rng, tokens, self.valid(tokens), positions, train=False, token_types=batch["token_types"]
    )
    return split_variables(variables)

  def _forward(self, params, model_state, batch, rng, train):
    mask_key, dropout_key = jax.random.split(rng)
    tokens = batch["tokens"]
    inputs, positions, targets, weights = bert_mask(mask_key, tokens, **self.mask_options)
    mlm_logits, pair_logits = self.model.apply(
      {"params": params, **model_state},
      inputs,
      self.valid(tokens),
      positions,
      train=train,
      token_types=batch["token_types"],
      rngs={"dropout": dropout_key},
    )
    return mlm_logits, targets, weights, pair_logits

  def masked_predictions(self, params, model_state, batch, rng, train: bool):
    logits, targets, weights, _ = self._forward(params, model_state, batch, rng, train)
    return logits, targets, weights

  def pair_predictions(self, params, model_state, batch, rng):
    return self._forward(params, model_state, batch, rng, False)[3]

  def masked_lm_log_probs(self, params, model_state, tokens, positions):
    logits, _ = self.model.apply(
      {"params": params, **model_state}, tokens, self.valid(tokens), positions[:, None], False
    )
    return jax.nn.log_softmax(logits[:, 0].astype(jnp.float32))

  def loss_fn(self, params, model_state, batch, rng, step):
    del step
    batch = self.augment(rng, batch)
    logits, targets, weights, pair_logits = self._forward(params, model_state, batch, rng, True)
    mlm_loss = weighted_cross_entropy(logits, targets, weights)
    pair_loss = cross_entropy(pair_logits, batch["pair_label"])
    pair_correct = (pair_logits.argmax(-1) == batch["pair_label"]).astype(jnp.float32)
    metrics = {
      "masked_accuracy": weighted_accuracy(logits, targets, weights),
      "mlm_loss": mlm_loss,
      f"{self.pair_objective}_loss": pair_loss,
      f"{self.pair_objective}_accuracy": pair_correct.mean(),
    }
    return mlm_loss + self.pair_weight * pair_loss, (metrics, model_state)

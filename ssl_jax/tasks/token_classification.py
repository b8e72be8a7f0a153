"""Token classification (named-entity style BIO tagging) by fine-tuning a pretrained encoder.

  config.task = "token_classification"
  config.task_kwargs = {"init_from": "/tmp/bert_python_text", "method": "full"}
  config.data = {"name": "conll_files", "train_path": "/data/train.txt",
                 "test_path": "/data/test.txt",
                 "tokenizer_path": "/tmp/bert_python_text/tokenizer.model"}

A `TokenTagger` (encoder, dropout, a linear layer per token) is trained with the cross entropy
of the tagged pieces only (`batch["tags"]`; `token_tags.IGNORE` elsewhere: specials, padding,
and a word's later pieces unless the data sets `label_all_tokens`). The methods are those of
`classification` (full with freeze / layer_decay, linear, peft: lora, adapter, prefix, prompt,
and scratch); prompt tuning's reserved positions are moved back before the loss
(`PeftMethod.restore_positions`), so tags stay on their tokens. Adversarial and
semi-supervised training and label smoothing are whole-row objectives and are refused here.
The `token_classification` evaluator scores words (their first pieces) with entity-level
F1 in the conlleval and strict IOB2 modes.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import ml_collections

from ssl_jax.capabilities import TokenLabeller
from ssl_jax.data.source import Dataset
from ssl_jax.data.token_tags import IGNORE
from ssl_jax.losses import weighted_cross_entropy
from ssl_jax.models.heads import TokenTagger
from ssl_jax.registry import TASKS
from ssl_jax.tasks.base import require_columns
from ssl_jax.tasks.classification import TextFineTuning
from ssl_jax.tasks.fine_tuning import check_fine_tuning_options

TAG_KEYS = ("tokens", "tags", "first_piece")


@TASKS.register("token_classification", check=check_fine_tuning_options)
class TokenClassification(TextFineTuning, TokenLabeller):
  """Per-token cross entropy of a `TokenTagger` on `batch["tags"]`; see the module docstring.
  Options: init_from, method, freeze, layer_decay, head_dropout, peft."""

  # Only PEFT: adversarial and semi-supervised parts are whole-row objectives.
  nested_parts = {"peft": TextFineTuning.nested_parts["peft"]}

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    init_from: str = "",
    method: str = "full",
    freeze: str = "none",
    layer_decay: float = 1.0,
    head_dropout: float = 0.0,
    peft: dict[str, Any] | None = None,
  ):
    require_columns(config, dataset, TAG_KEYS, "'conll_files'")
    super().__init__(
      config,
      dataset,
      init_from,
      method,
      freeze,
      layer_decay,
      peft=peft,
      adversarial={"name": "none"},
      semi_supervised={"name": "none"},
    )
    self.model = TokenTagger(self.encoder_module(), self.num_classes, head_dropout)
    self.outside_tag = int(dataset.info["tag_names"].index("O"))

  def token_logits(self, params, model_state, tokens, rng, train: bool) -> jnp.ndarray:
    """[B, L, tags] logits at the positions of `tokens` (prompt slots moved back out)."""
    logits, _ = self.forward(params, model_state, tokens, rng, train)
    if self.peft is not None:
      # A position the method cut from the row is predicted "O" (and never trained on).
      fill = jnp.full((self.num_classes,), -1e4, logits.dtype).at[self.outside_tag].set(0.0)
      logits = self.peft.restore_positions(logits, fill)
    return logits

  def tag_predictions(self, params, model_state, batch) -> jnp.ndarray:
    return self.token_logits(params, model_state, batch["tokens"], None, False).argmax(-1)

  def loss_fn(self, params, model_state, batch, rng, step):
    del step
    tags = batch["tags"]
    logits = self.token_logits(params, model_state, batch["tokens"], rng, True)
    weights = (tags != IGNORE).astype(jnp.float32)
    if self.peft is not None:
      # Tags whose tokens the prompt pushed out of the row cannot be predicted: not trained.
      weights = (
        weights
        * self.peft.restore_positions(
          jnp.ones(tags.shape + (1,), jnp.float32), jnp.zeros((1,), jnp.float32)
        )[..., 0]
      )
    targets = jnp.where(tags == IGNORE, 0, tags)
    loss = weighted_cross_entropy(logits, targets, weights)
    correct = (logits.argmax(-1) == targets).astype(jnp.float32)
    accuracy = (correct * weights).sum() / jnp.maximum(weights.sum(), 1.0)
    return loss, ({"token_accuracy": accuracy}, model_state)

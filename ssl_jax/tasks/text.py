"""What every text pretext task shares: the data's vocabulary facts, row length and padding, the
model built for them, text augmentation of the input rows, and the packed-row inputs."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections

from ssl_jax.data.source import Dataset
from ssl_jax.data.text_augment import TextAugmenter
from ssl_jax.tasks.base import Task, build_model


class TextTask(Task):
  """Base of the token-row tasks (`batch["tokens"]` [B, L], padding `pad_id`).

  Attributes set here: `info` (the dataset's vocabulary facts), `seq_len` (the training rows'
  length), `pad_id`, and `augment` (`config.augment` as a `TextAugmenter`: deletion /
  substitution / span shuffle of the input rows; off by default).
  """

  modality = "text"

  def __init__(self, config: ml_collections.ConfigDict, dataset: Dataset):
    super().__init__(config, dataset)
    self.info: dict[str, Any] = dataset.info
    self.seq_len = int(dataset.split(dataset.train_split)["tokens"].shape[1])
    self.pad_id = int(self.info["pad_id"])
    self.augment = TextAugmenter(config.get("augment", {}), self.info)

  def build_text_model(self, max_length: int | None = None) -> nn.Module:
    """`config.model` sized for this vocabulary, with `max_length` positions (default: the
    training rows' length) and the data's token types (sentence pairs) unless
    `config.model_kwargs` sets them."""
    derived = dict(vocab_size=self.info["vocab_size"], max_length=max_length or self.seq_len)
    if self.info.get("num_token_types"):  # sentence-pair rows carry token types
      derived["num_token_types"] = self.info["num_token_types"]
    return build_model(self.config, **derived)

  def valid(self, tokens: jax.Array) -> jax.Array:
    """[B, L] True on real (non-padding) tokens."""
    return tokens != self.pad_id


ROW_LAYOUT_KEYS = ("segment_ids", "positions", "token_types")


def packing_inputs(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The row layout of a text batch, named as `TransformerEncoder.__call__` takes it: segment
  ids and per-document positions of packed rows, token types of sentence-pair rows."""
  return {key: batch[key] for key in ROW_LAYOUT_KEYS if key in batch}

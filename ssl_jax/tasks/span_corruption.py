"""T5 span corruption (Raffel et al. 2020; the seqio `span_corruption` preprocessor).

A row of raw tokens is split into alternating non-noise and noise spans (noise density 0.15,
mean noise span length 3, starting with non-noise). Each noise span becomes one sentinel in the
inputs; the targets are each sentinel followed by the span it hides, and both end with EOS:

  tokens   a b c d e f g h
  inputs   a b <extra_id_0> e f <extra_id_1> h EOS
  targets  <extra_id_0> c d <extra_id_1> g EOS

Span counts depend only on the row length, so inputs and targets have fixed lengths, given by
`span_corruption_lengths` (568 raw tokens -> 512 inputs and 114 targets). As in seqio, rows are
streams of concatenated documents (each [CLS] text [SEP]); padding, found only in the last row of
a packed split, is dropped from both sides.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.capabilities import EncoderView, SpanTargetPredictor
from ssl_jax.data.source import Dataset
from ssl_jax.losses import weighted_accuracy, weighted_cross_entropy
from ssl_jax.models.encoder_decoder import TransformerEncoderDecoder
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import mean_over_valid, split_variables, without_key
from ssl_jax.tasks.text import TextTask


def noise_counts(
  length: int, noise_density: float, mean_noise_span_length: float
) -> tuple[int, int]:
  """(noise tokens, noise spans) of a row of `length` tokens, rounded as seqio rounds them."""
  num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
  num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
  return num_noise, num_spans


def corrupted_lengths(
  tokens_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
  """(inputs length, targets length) for a raw row of `tokens_length` tokens: inputs hold the
  non-noise tokens, one sentinel per span and EOS; targets the noise tokens, one sentinel per
  span and EOS."""
  num_noise, num_spans = noise_counts(tokens_length, noise_density, mean_noise_span_length)
  return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1


def span_corruption_lengths(
  inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
  """(raw tokens length, targets length): the longest raw row whose corrupted inputs fit in
  `inputs_length` (T5's `random_spans_helper`). 512 -> (568, 114)."""
  tokens_length = inputs_length - 1
  while (
    corrupted_lengths(tokens_length + 1, noise_density, mean_noise_span_length)[0] <= inputs_length
  ):
    tokens_length += 1
  targets_length = corrupted_lengths(tokens_length, noise_density, mean_noise_span_length)[1]
  # T5's own adjustment: at density 0.5 the targets would come out one longer than the inputs
  # (e.g. 513 for 512); one raw token fewer keeps targets within the (round) inputs length.
  if noise_density == 0.5 and targets_length > inputs_length:
    tokens_length -= 1
    targets_length -= 1
  return tokens_length, targets_length


def _random_segmentation(key: jax.Array, num_items: int, num_segments: int) -> jnp.ndarray:
  """[num_segments] positive lengths summing to `num_items`, uniformly at random."""
  starts = jax.random.permutation(key, jnp.arange(num_items - 1) < num_segments - 1)
  segment_id = jnp.cumsum(jnp.concatenate([jnp.zeros((1,), jnp.int32), starts.astype(jnp.int32)]))
  return jnp.zeros((num_segments,), jnp.int32).at[segment_id].add(1)


def random_spans_noise_mask(
  key: jax.Array, length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> jnp.ndarray:
  """[length] bool, True on noise: alternating non-noise/noise spans, non-noise first, with the
  exact counts of `noise_counts`."""
  num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
  noise_key, nonnoise_key = jax.random.split(key)
  noise_lengths = _random_segmentation(noise_key, num_noise, num_spans)
  nonnoise_lengths = _random_segmentation(nonnoise_key, length - num_noise, num_spans)
  interleaved = jnp.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
  span_starts = jnp.cumsum(interleaved)[:-1]
  span_number = jnp.cumsum(jnp.zeros((length,), jnp.int32).at[span_starts].add(1))
  return span_number % 2 == 1


def _sentinelize_and_compact(
  tokens: jnp.ndarray,
  spans: jnp.ndarray,
  keep_token: jnp.ndarray,
  first_sentinel: int,
  eos_id: int,
  pad_id: int,
  out_length: int,
) -> jnp.ndarray:
  """One row: each run of `spans` becomes one sentinel (numbered from `first_sentinel` down),
  dropped tokens and padding are removed, EOS is appended, and the rest is padding."""
  previous = jnp.concatenate([jnp.zeros((1,), bool), spans[:-1]])
  first = spans & ~previous
  sentinel = first_sentinel + 1 - jnp.cumsum(first)
  values = jnp.where(first, sentinel, tokens)
  keep = (first | ~spans) & keep_token
  slot = jnp.where(keep, jnp.cumsum(keep) - 1, out_length)  # out_length: dropped (mode="drop")
  out = jnp.full((out_length,), pad_id, tokens.dtype).at[slot].set(values, mode="drop")
  return out.at[jnp.minimum(keep.sum(), out_length - 1)].set(eos_id)


def span_corrupt(
  key: jax.Array,
  tokens: jnp.ndarray,
  *,
  first_sentinel: int,
  eos_id: int,
  pad_id: int,
  noise_density: float = 0.15,
  mean_noise_span_length: float = 3.0,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(inputs [B, inputs_length], targets [B, targets_length]) of raw rows `tokens` [B, L].

  `first_sentinel` is the id of `<extra_id_0>`; the k-th span uses `first_sentinel - k`.
  """
  length = tokens.shape[1]
  inputs_length, targets_length = corrupted_lengths(length, noise_density, mean_noise_span_length)
  noise = jax.vmap(
    functools.partial(
      random_spans_noise_mask,
      length=length,
      noise_density=noise_density,
      mean_noise_span_length=mean_noise_span_length,
    )
  )(jax.random.split(key, tokens.shape[0]))
  real = tokens != pad_id
  compact = functools.partial(
    _sentinelize_and_compact, first_sentinel=first_sentinel, eos_id=eos_id, pad_id=pad_id
  )
  inputs = jax.vmap(functools.partial(compact, out_length=inputs_length))(tokens, noise, real)
  # Targets: sentinels over the non-noise spans (which come first), so the k-th sentinel
  # precedes the k-th noise span.
  targets = jax.vmap(functools.partial(compact, out_length=targets_length))(tokens, ~noise, real)
  return inputs, targets


@TASKS.register("span_corruption")
class SpanCorruption(TextTask, EncoderView, SpanTargetPredictor):
  """T5 pretraining: a `transformer_encoder_decoder` reads the corrupted row and predicts the
  targets (teacher forcing, decoder inputs = [BOS] + targets[:-1]); the loss is the mean cross
  entropy over non-padding target tokens. The data must reserve sentinels
  (`config.data.extra_ids`, at least the number of spans per row). The encoder stack (with the
  shared token table) is the encoder a fine-tune starts from."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
  ):
    super().__init__(config, dataset)
    info, tokens_length = self.info, self.seq_len
    self.inputs_length, self.targets_length = corrupted_lengths(
      tokens_length, noise_density, mean_noise_span_length
    )
    _, num_spans = noise_counts(tokens_length, noise_density, mean_noise_span_length)
    if info.get("extra_ids", 0) < num_spans:
      raise ConfigError(
        f"Span corruption of {tokens_length}-token rows makes {num_spans} spans, each needing "
        f"a sentinel, but the tokenizer has extra_ids={info.get('extra_ids', 0)}. Set "
        f"config.data.extra_ids >= {num_spans} (T5 uses 100)."
      )
    # Long enough for the raw rows too, so `represent` can read uncorrupted text (short spans
    # make the inputs longer than the raw rows: one sentinel per span).
    self.model = self.build_text_model(max(tokens_length, self.inputs_length, self.targets_length))
    if not isinstance(self.model, TransformerEncoderDecoder):
      raise ConfigError(
        f"Task 'span_corruption' needs an encoder-decoder; config.model="
        f"{config.model!r}. Use 'transformer_encoder_decoder'."
      )
    self.encoder = self.model.standalone_encoder()
    self.bos_id = info["bos_id"]
    self.corrupt_options = dict(
      first_sentinel=info["vocab_size"] - 1,
      eos_id=info["eos_id"],
      pad_id=info["pad_id"],
      noise_density=noise_density,
      mean_noise_span_length=mean_noise_span_length,
    )

  def init(self, rng, batch):
    batch_size = batch["tokens"].shape[0]
    inputs = jnp.zeros((batch_size, self.inputs_length), jnp.int32)
    targets = jnp.zeros((batch_size, self.targets_length), jnp.int32)
    return split_variables(
      self.model.init(rng, inputs, inputs >= 0, targets, targets >= 0, train=False)
    )

  def corrupt(self, rng: jax.Array, tokens: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    return span_corrupt(rng, tokens, **self.corrupt_options)

  def target_predictions(self, params, model_state, batch, rng, train: bool):
    corrupt_key, dropout_key = jax.random.split(rng)
    inputs, targets = self.corrupt(corrupt_key, batch["tokens"])
    decoder_inputs = jnp.concatenate(
      [jnp.full((targets.shape[0], 1), self.bos_id, targets.dtype), targets[:, :-1]], axis=1
    )
    hidden = self.model.apply(
      {"params": params, **model_state},
      inputs,
      self.valid(inputs),
      decoder_inputs,
      self.valid(decoder_inputs),
      train=train,
      rngs={"dropout": dropout_key},
    )
    logits = self.model.apply({"params": params}, hidden, method=lambda m, h: m.attend(h)).astype(
      jnp.float32
    )
    return logits, targets, self.valid(targets).astype(jnp.float32)

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    augment_key, rng = jax.random.split(rng)
    batch = self.augment(augment_key, batch)
    logits, targets, weights = self.target_predictions(params, model_state, batch, rng, True)
    loss = weighted_cross_entropy(logits, targets, weights)
    return loss, ({"target_accuracy": weighted_accuracy(logits, targets, weights)}, model_state)

  # --- The encoder: the encoder stack with the shared token table -------------------------------

  def encoder_module(self):
    return self.encoder

  def encoder_variables(self, params, model_state):
    return self.split_encoder(params, model_state)[0]

  def split_encoder(self, params, model_state):
    encoder = {"params": {**params["encoder"], "embed": params["shared"]}}
    rest = {k: v for k, v in params.items() if k not in ("encoder", "shared")}
    return encoder, (rest, model_state)

  def merge_encoder(self, encoder_variables, rest):
    params, model_state = rest
    encoder = encoder_variables["params"]
    return {
      **params,
      "encoder": without_key(encoder, "embed"),
      "shared": encoder["embed"],
    }, model_state

  def represent(self, params, model_state, batch):
    """Mean encoder state over the real tokens of the uncorrupted row."""
    tokens = batch["tokens"]
    valid = self.valid(tokens)
    hidden = self.encoder.apply(self.encoder_variables(params, model_state), tokens, valid, False)
    return mean_over_valid(hidden, valid)

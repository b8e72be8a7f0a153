"""T5 span corruption: the length formula, exact span counts, sentinel order, lossless
reconstruction of the raw row, padding, and the encoder-decoder task end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config, override

from ssl_jax import train
from ssl_jax.models.encoder_decoder import TransformerEncoderDecoder
from ssl_jax.registry import ConfigError
from ssl_jax.tasks.span_corruption import (
  corrupted_lengths,
  noise_counts,
  random_spans_noise_mask,
  span_corrupt,
  span_corruption_lengths,
)

EOS, PAD, FIRST_SENTINEL = 3, 0, 999


def reconstruct(inputs, targets):
  """The raw row from inputs and targets: each input sentinel replaced by the target span that
  follows the same sentinel."""
  spans, current = {}, None
  for t in targets.tolist():
    if t == EOS:
      break
    if t > 900:
      current = t
      spans[current] = []
    else:
      spans[current].append(t)
  out = []
  for t in inputs.tolist():
    if t == EOS:
      break
    out += spans[t] if t > 900 else [t]
  return out, spans


def test_length_formula_matches_t5():
  assert span_corruption_lengths(512) == (568, 114)
  assert corrupted_lengths(568) == (512, 114)
  assert noise_counts(568, 0.15, 3.0) == (85, 28)
  # 70 raw tokens: round(10.5) = 10 noise tokens (half to even, as seqio), round(3.33) = 3 spans.
  assert noise_counts(70, 0.15, 3.0) == (10, 3)
  assert corrupted_lengths(70) == (64, 14)
  assert span_corruption_lengths(64) == (70, 14)


def test_noise_mask_has_exact_counts_and_starts_with_nonnoise():
  masks = np.asarray(
    jax.vmap(lambda k: random_spans_noise_mask(k, 568))(jax.random.split(jax.random.key(0), 200))
  )
  assert (masks.sum(1) == 85).all()
  starts = masks[:, 1:] & ~masks[:, :-1]
  assert (starts.sum(1) == 28).all() and not masks[:, 0].any()
  # Span lengths vary (random segmentation) and average 85 / 28.
  lengths = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], masks[0].astype(int), [0]]))))[::2]
  assert lengths.sum() == 85 and len(lengths) == 28 and lengths.min() >= 1
  assert len(set(lengths.tolist())) > 1
  # Different keys give different masks.
  assert len({m.tobytes() for m in masks}) == 200


def test_span_corrupt_fills_fixed_lengths_and_reconstructs_the_row():
  tokens = jax.random.randint(jax.random.key(1), (8, 568), 10, 900)
  inputs, targets = span_corrupt(
    jax.random.key(2), tokens, first_sentinel=FIRST_SENTINEL, eos_id=EOS, pad_id=PAD
  )
  inputs, targets, tokens = map(np.asarray, (inputs, targets, tokens))
  assert inputs.shape == (8, 512) and targets.shape == (8, 114)
  # Full rows: no padding at all; each ends with EOS.
  assert (inputs[:, -1] == EOS).all() and (targets[:, -1] == EOS).all()
  assert (inputs != PAD).all() and (targets != PAD).all()
  for row in range(8):
    input_sentinels = inputs[row][inputs[row] > 900]
    target_sentinels = targets[row][targets[row] > 900]
    # One sentinel per span, numbered <extra_id_0>, <extra_id_1>, ... in order on both sides.
    np.testing.assert_array_equal(input_sentinels, FIRST_SENTINEL - np.arange(28))
    np.testing.assert_array_equal(target_sentinels, FIRST_SENTINEL - np.arange(28))
    assert inputs[row][0] <= 900  # the row starts with a non-noise span
    restored, spans = reconstruct(inputs[row], targets[row])
    assert restored == tokens[row].tolist()
    assert sum(map(len, spans.values())) == 85 and all(spans.values())


def test_span_corrupt_drops_padding():
  tokens = np.full((1, 70), PAD, np.int32)
  tokens[0, :50] = np.arange(10, 60)
  inputs, targets = map(
    np.asarray,
    span_corrupt(
      jax.random.key(3), jnp.asarray(tokens), first_sentinel=FIRST_SENTINEL, eos_id=EOS, pad_id=PAD
    ),
  )
  assert inputs.shape == (1, 64) and targets.shape == (1, 14)
  restored, _ = reconstruct(inputs[0], targets[0])
  assert restored == list(range(10, 60))
  # Padding only after EOS.
  for row in (inputs[0], targets[0]):
    eos = np.flatnonzero(row == EOS)[0]
    assert (row[eos + 1 :] == PAD).all() and (row[:eos] != PAD).all()


def test_decoder_is_causal_and_ignores_padded_inputs():
  model = TransformerEncoderDecoder(vocab_size=50, size="tiny", max_length=16, dropout_rate=0.0)
  inputs = jax.random.randint(jax.random.key(0), (2, 10), 5, 50)
  decoder_inputs = jax.random.randint(jax.random.key(1), (2, 6), 5, 50)
  input_valid = jnp.arange(10)[None] < jnp.array([[10], [7]])
  params = model.init(
    jax.random.key(2), inputs, input_valid, decoder_inputs, decoder_inputs > 0, train=False
  )
  run = lambda i, d: model.apply(params, i, input_valid, d, d > 0, train=False)
  base = run(inputs, decoder_inputs)
  # Changing decoder tokens after position 2 leaves positions 0..2 unchanged.
  changed = run(inputs, decoder_inputs.at[:, 3:].set(7))
  np.testing.assert_allclose(base[:, :3], changed[:, :3], atol=1e-6)
  assert np.abs(base[:, 3:] - changed[:, 3:]).max() > 1e-3
  # Changing the padded inputs of row 1 (positions 7..9) changes nothing.
  padded = run(inputs.at[1, 7:].set(9), decoder_inputs)
  np.testing.assert_allclose(base, padded, atol=1e-6)
  # The encoder and decoder share one embedding table (T5's shared vocabulary).
  assert set(params["params"]) == {"shared", "encoder", "decoder"}
  assert "embed" not in params["params"]["encoder"] and "embed" not in params["params"]["decoder"]


def tiny_t5_config(**overrides):
  config = load_config("t5_python_text")
  config.model_kwargs.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
  config.data.update(dict(seq_len=35, vocab_size=500, stdlib_docstrings=False, extra_ids=10))
  config.update(
    dict(batch_size=16, eval_batch_size=32, total_steps=150, log_every=50, checkpoint_every=150)
  )
  config.optim.warmup_steps = 5
  config.optim.learning_rate = 3e-3
  return override(config, overrides)


@pytest.mark.e2e
def test_t5_task_trains_and_reports_against_unigram(tmp_path):
  results = train.train_and_evaluate(tiny_t5_config(), str(tmp_path))
  report = results["evals"]["span_corruption"]
  model, unigram = report["span_corruption"], report["unigram (train token frequencies)"]
  assert 0 < model["span-token acc"] <= 1
  # 150 tiny steps: far below the uniform model's perplexity (the vocabulary), near unigram's.
  assert model["perplexity"] < 0.5 * (500 + 10) and unigram["perplexity"] < 0.5 * 510
  # The sentinels the run used are written into its config.
  import json

  written = json.loads((tmp_path / "config.json").read_text())
  info = written["dataset_info"]
  assert info["extra_ids"] == 10 and info["vocab_size"] == info["text_vocab_size"] + 10
  assert info["special_tokens"]["<extra_id_0..9>"] == [
    info["vocab_size"] - 1,
    info["vocab_size"] - 10,
  ]
  assert info["special_tokens"]["[MASK]"] == 4


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"data.extra_ids": 1}, r"makes 2 spans.*extra_ids=1.*config.data.extra_ids >= 2"),
    ({"model": "transformer_encoder"}, r"needs an encoder-decoder.*transformer_encoder_decoder"),
  ],
)
def test_t5_config_errors(tmp_path, overrides, message):
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(tiny_t5_config(**overrides), str(tmp_path))


def _t5_random_spans_helper(inputs_length, noise_density, mean_noise_span_length):
  """google-research/text-to-text-transfer-transformer's `random_spans_helper` (one sentinel
  per span on both sides), transcribed for the comparison."""

  def lengths(tokens_length):
    num_noise_tokens = int(round(tokens_length * noise_density))
    num_nonnoise_tokens = tokens_length - num_noise_tokens
    num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
    return num_nonnoise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1

  tokens_length = inputs_length - 1
  while lengths(tokens_length + 1)[0] <= inputs_length:
    tokens_length += 1
  inputs_length, targets_length = lengths(tokens_length)
  if noise_density == 0.5 and targets_length > inputs_length:
    tokens_length -= 1
    targets_length -= 1
  return tokens_length, targets_length


def test_length_helper_at_half_density_keeps_targets_within_inputs():
  assert span_corruption_lengths(512, 0.5, 3.0) == (766, 512)
  for inputs_length in (64, 100, 128, 257, 512, 1024):
    for density, span in ((0.15, 3.0), (0.5, 3.0), (0.5, 8.0), (0.3, 2.0)):
      assert span_corruption_lengths(inputs_length, density, span) == _t5_random_spans_helper(
        inputs_length, density, span
      ), (inputs_length, density, span)

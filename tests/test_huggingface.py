"""Hugging Face interop, checked against transformers itself: a random small BertForMaskedLM /
GPT2LMHeadModel converted to ssl_jax gives the same logits (float32, 1e-4), and an ssl_jax
model converted to transformers gives the same logits as in ssl_jax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from hf_testing import VOCAB, perturbed, small_bert_config, torch_state

from ssl_jax.models.huggingface import bert_from_hf, bert_to_hf, gpt2_from_hf, gpt2_to_hf
from ssl_jax.models.transformer import TransformerDecoder, TransformerEncoder
from ssl_jax.tasks.mlm import MaskedLMModel

LENGTH = 12
torch.manual_seed(0)


def _tokens(batch=3):
  return np.random.default_rng(0).integers(5, VOCAB, (batch, LENGTH)).astype(np.int64)


def _bert_logits_jax(encoder, params, tokens, valid):
  positions = jnp.broadcast_to(jnp.arange(LENGTH), tokens.shape)
  return np.asarray(
    MaskedLMModel(encoder).apply(
      {"params": params}, jnp.asarray(tokens), jnp.asarray(valid), positions, train=False
    )
  )


def _bert_logits_torch(model, tokens, valid):
  with torch.no_grad():
    return model(
      input_ids=torch.from_numpy(tokens), attention_mask=torch.from_numpy(valid.astype(np.int64))
    ).logits.numpy()


@pytest.fixture(scope="module")
def hf_bert():
  return perturbed(transformers.BertForMaskedLM(small_bert_config()))


def test_bert_from_hf_matches_transformers(hf_bert):
  encoder, params = bert_from_hf(hf_bert.state_dict(), hf_bert.config.to_dict())
  tokens = _tokens()
  valid = np.ones_like(tokens, bool)
  valid[1, 8:] = False  # a padded row: real positions must still agree
  ours, theirs = (
    _bert_logits_jax(encoder, params, tokens, valid),
    _bert_logits_torch(hf_bert, tokens, valid),
  )
  assert ours.shape == theirs.shape == (3, LENGTH, VOCAB)
  np.testing.assert_allclose(ours[valid], theirs[valid], atol=1e-4, rtol=0)
  assert np.abs(theirs).max() > 1.0  # the comparison is not between near-zero logits


def test_bert_to_hf_matches_ssl_jax_and_round_trips(hf_bert):
  encoder = TransformerEncoder(
    vocab_size=VOCAB,
    width=32,
    depth=2,
    num_heads=4,
    mlp_dim=64,
    max_length=16,
    dropout_rate=0.0,
    post_norm=True,
    norm_epsilon=1e-12,
    gelu_approximate=False,
    num_token_types=2,
  )
  tokens = _tokens()
  valid = np.ones_like(tokens, bool)
  params = MaskedLMModel(encoder).init(
    jax.random.key(1),
    jnp.asarray(tokens),
    jnp.asarray(valid),
    jnp.zeros((3, LENGTH), jnp.int32),
    train=False,
  )["params"]
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape), params)
  config, state_dict = bert_to_hf(encoder, params)
  model = transformers.BertForMaskedLM(transformers.BertConfig(**config)).eval()
  model.load_state_dict(torch_state(state_dict), strict=True)
  np.testing.assert_allclose(
    _bert_logits_torch(model, tokens, valid),
    _bert_logits_jax(encoder, params, tokens, valid),
    atol=1e-4,
    rtol=0,
  )
  # And back: the same parameters, bit for bit.
  encoder_back, params_back = bert_from_hf(model.state_dict(), model.config.to_dict())
  assert encoder_back.dims == encoder.dims and encoder_back.post_norm
  jax.tree.map(np.testing.assert_array_equal, params_back, jax.tree.map(np.asarray, params))


def test_pre_norm_encoder_is_not_exported_as_bert():
  encoder = TransformerEncoder(vocab_size=VOCAB, size="tiny")
  with pytest.raises(ValueError, match="post-norm"):
    bert_to_hf(encoder, {})


def test_missing_weights_are_named(hf_bert):
  state = dict(hf_bert.state_dict())
  del state["bert.encoder.layer.1.output.dense.weight"]
  with pytest.raises(KeyError, match=r"layer.1.output.dense.weight"):
    bert_from_hf(state, hf_bert.config.to_dict())


@pytest.fixture(scope="module")
def hf_gpt2():
  config = transformers.GPT2Config(
    vocab_size=VOCAB,
    n_embd=32,
    n_layer=2,
    n_head=4,
    n_positions=16,
    bos_token_id=2,
    eos_token_id=3,
    initializer_range=0.2,
  )
  model = transformers.GPT2LMHeadModel(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or ".ln_" in name:
        p.add_(0.1 * torch.randn_like(p))
  return model


def _gpt2_logits_torch(model, tokens):
  with torch.no_grad():
    return model(input_ids=torch.from_numpy(tokens)).logits.numpy()


def _gpt2_logits_jax(decoder, params, tokens):
  tokens = jnp.asarray(tokens)
  hidden = decoder.apply({"params": params}, tokens, tokens >= 0, train=False)
  return np.asarray(decoder.apply({"params": params}, hidden, method=lambda m, h: m.attend(h)))


def test_gpt2_from_hf_matches_transformers(hf_gpt2):
  decoder, params = gpt2_from_hf(hf_gpt2.state_dict(), hf_gpt2.config.to_dict())
  tokens = _tokens()
  ours, theirs = _gpt2_logits_jax(decoder, params, tokens), _gpt2_logits_torch(hf_gpt2, tokens)
  np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
  assert np.abs(theirs).max() > 0.5


def test_gpt2_to_hf_matches_ssl_jax_and_round_trips():
  decoder = TransformerDecoder(
    vocab_size=VOCAB, width=32, depth=2, num_heads=4, mlp_dim=64, max_length=16, dropout_rate=0.0
  )
  tokens = _tokens()
  params = decoder.init(
    jax.random.key(3), jnp.asarray(tokens), jnp.asarray(tokens) >= 0, train=False
  )["params"]
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(4), p.shape), params)
  config, state_dict = gpt2_to_hf(decoder, params)
  model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).eval()
  missing, unexpected = model.load_state_dict(torch_state(state_dict), strict=False)
  assert not unexpected and all(k.endswith((".attn.bias", ".attn.masked_bias")) for k in missing)
  np.testing.assert_allclose(
    _gpt2_logits_torch(model, tokens), _gpt2_logits_jax(decoder, params, tokens), atol=1e-4, rtol=0
  )
  decoder_back, params_back = gpt2_from_hf(model.state_dict(), model.config.to_dict())
  assert decoder_back.dims == decoder.dims
  assert decoder_back.norm_epsilon == decoder.norm_epsilon
  jax.tree.map(np.testing.assert_array_equal, params_back, jax.tree.map(np.asarray, params))

"""BERT with token types, both ways, checked against transformers itself: `BertForPreTraining`
(MLM and NSP logits on pair rows with token_type_ids) and `BertForTokenClassification`
(per-token logits), float32 within 1e-4; an encoder without a type table exports a zero one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from hf_testing import VOCAB, perturbed, small_bert_config, torch_state

from ssl_jax.models.heads import TokenTagger
from ssl_jax.models.huggingface import (
  bert_pretraining_from_hf,
  bert_pretraining_to_hf,
  bert_to_hf,
  bert_token_classifier_from_hf,
  bert_token_classifier_to_hf,
)
from ssl_jax.models.transformer import TransformerEncoder
from ssl_jax.tasks.bert_pretraining import BertPretrainingModel
from ssl_jax.tasks.mlm import MaskedLMModel

LENGTH, LABELS = 12, 5
torch.manual_seed(0)


def _rows(batch=3):
  """Pair rows: tokens, valid, and token types (0 on A, 1 on B, 0 on padding)."""
  tokens = np.random.default_rng(0).integers(5, VOCAB, (batch, LENGTH)).astype(np.int64)
  valid = np.ones_like(tokens, bool)
  valid[1, 9:] = False
  types = np.zeros_like(tokens)
  types[:, 5:] = 1
  types[~valid] = 0
  return tokens, valid, types


def _torch_inputs(tokens, valid, types):
  return dict(
    input_ids=torch.from_numpy(tokens),
    attention_mask=torch.from_numpy(valid.astype(np.int64)),
    token_type_ids=torch.from_numpy(types),
  )


def _pretraining_logits_jax(encoder, params, tokens, valid, types):
  positions = jnp.broadcast_to(jnp.arange(LENGTH), tokens.shape)
  mlm, nsp = BertPretrainingModel(encoder).apply(
    {"params": params},
    jnp.asarray(tokens),
    jnp.asarray(valid),
    positions,
    train=False,
    token_types=jnp.asarray(types),
  )
  return np.asarray(mlm), np.asarray(nsp)


def test_bert_for_pretraining_both_ways():
  hf = perturbed(transformers.BertForPreTraining(small_bert_config()))
  tokens, valid, types = _rows()
  encoder, params = bert_pretraining_from_hf(hf.state_dict(), hf.config.to_dict())
  assert encoder.num_token_types == 2
  with torch.no_grad():
    out = hf(**_torch_inputs(tokens, valid, types))
  mlm, nsp = _pretraining_logits_jax(encoder, params, tokens, valid, types)
  np.testing.assert_allclose(mlm[valid], out.prediction_logits.numpy()[valid], atol=1e-4, rtol=0)
  np.testing.assert_allclose(nsp, out.seq_relationship_logits.numpy(), atol=1e-4, rtol=0)
  assert np.abs(out.seq_relationship_logits.numpy()).max() > 0.1
  # Token types matter: the same rows as all type 0 give other logits.
  mlm_zero, _ = _pretraining_logits_jax(encoder, params, tokens, valid, np.zeros_like(types))
  assert np.abs(mlm_zero - mlm)[valid].max() > 1e-2

  # And back out: a fresh BertForPreTraining loads it strictly and agrees; then in again,
  # bit for bit.
  params = jax.tree.map(lambda p: p + 0.05 * np.random.default_rng(1).normal(size=p.shape), params)
  params = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
  config, state_dict = bert_pretraining_to_hf(encoder, params)
  back = transformers.BertForPreTraining(transformers.BertConfig(**config)).eval()
  back.load_state_dict(torch_state(state_dict), strict=True)
  with torch.no_grad():
    out = back(**_torch_inputs(tokens, valid, types))
  mlm, nsp = _pretraining_logits_jax(encoder, params, tokens, valid, types)
  np.testing.assert_allclose(out.prediction_logits.numpy()[valid], mlm[valid], atol=1e-4, rtol=0)
  np.testing.assert_allclose(out.seq_relationship_logits.numpy(), nsp, atol=1e-4, rtol=0)
  _, params_back = bert_pretraining_from_hf(back.state_dict(), back.config.to_dict())
  jax.tree.map(np.testing.assert_array_equal, params_back, params)


def _tagger_logits_jax(encoder, params, tokens, valid, types):
  return np.asarray(
    TokenTagger(encoder, LABELS).apply(
      {"params": params},
      jnp.asarray(tokens),
      jnp.asarray(valid),
      False,
      token_types=jnp.asarray(types),
    )
  )


def test_bert_for_token_classification_both_ways():
  hf = perturbed(transformers.BertForTokenClassification(small_bert_config(num_labels=LABELS)))
  tokens, valid, types = _rows()
  encoder, params = bert_token_classifier_from_hf(hf.state_dict(), hf.config.to_dict())
  with torch.no_grad():
    theirs = hf(**_torch_inputs(tokens, valid, types)).logits.numpy()
  ours = _tagger_logits_jax(encoder, params, tokens, valid, types)
  assert ours.shape == (3, LENGTH, LABELS)
  np.testing.assert_allclose(ours[valid], theirs[valid], atol=1e-4, rtol=0)

  config, state_dict = bert_token_classifier_to_hf(encoder, params)
  assert config["num_labels"] == LABELS
  back = transformers.BertForTokenClassification(transformers.BertConfig(**config)).eval()
  back.load_state_dict(torch_state(state_dict), strict=True)
  with torch.no_grad():
    again = back(**_torch_inputs(tokens, valid, types)).logits.numpy()
  np.testing.assert_allclose(again[valid], ours[valid], atol=1e-4, rtol=0)


def test_encoder_without_token_types_exports_a_zero_table():
  encoder = TransformerEncoder(
    vocab_size=VOCAB, width=32, depth=1, num_heads=4, mlp_dim=64, max_length=16, post_norm=True
  )
  tokens, valid, _ = _rows()
  params = MaskedLMModel(encoder).init(
    jax.random.key(0), jnp.asarray(tokens), jnp.asarray(valid), jnp.zeros((3, 2), jnp.int32)
  )["params"]
  config, state_dict = bert_to_hf(encoder, params)
  assert config["type_vocab_size"] == 2
  np.testing.assert_array_equal(state_dict["bert.embeddings.token_type_embeddings.weight"], 0.0)


def test_token_types_need_a_type_table():
  encoder = TransformerEncoder(vocab_size=VOCAB, size="tiny", max_length=16)
  tokens, valid, types = _rows()
  with pytest.raises(Exception, match="num_token_types"):
    encoder.init(jax.random.key(0), jnp.asarray(tokens), jnp.asarray(valid), token_types=types)

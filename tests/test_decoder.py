"""The GPT-style decoder: causal masking, KV-cache decoding equal to full recomputation, and
sampling filters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models import sampling
from ssl_jax.models.transformer import TransformerDecoder

VOCAB, LENGTH = 40, 12


@pytest.fixture(scope="module")
def decoder():
  model = TransformerDecoder(
    vocab_size=VOCAB,
    width=16,
    depth=2,
    num_heads=2,
    mlp_dim=32,
    max_length=LENGTH,
    dropout_rate=0.0,
  )
  tokens = jnp.zeros((2, LENGTH), jnp.int32)
  params = model.init(jax.random.key(0), tokens, tokens >= 0, train=False)["params"]
  return model, params


def _full_logits(model, params, tokens):
  hidden = model.apply({"params": params}, tokens, tokens >= 0, train=False)
  return model.apply({"params": params}, hidden, method=lambda m, h: m.attend(h))


def test_logits_at_t_do_not_depend_on_later_tokens(decoder):
  model, params = decoder
  tokens = jnp.asarray(np.random.default_rng(0).integers(5, VOCAB, (2, LENGTH)), jnp.int32)
  changed = tokens.at[:, 7:].set((tokens[:, 7:] + 3) % VOCAB)
  before, after = _full_logits(model, params, tokens), _full_logits(model, params, changed)
  np.testing.assert_allclose(before[:, :7], after[:, :7], atol=1e-6)
  assert not np.allclose(before[:, 7:], after[:, 7:], atol=1e-3)


def test_kv_cache_decoding_equals_full_recomputation(decoder):
  model, params = decoder
  tokens = jnp.asarray(np.random.default_rng(1).integers(5, VOCAB, (2, LENGTH)), jnp.int32)
  full = _full_logits(model, params, tokens)
  cache = sampling.init_cache(model, 2, LENGTH)
  for t in range(LENGTH):
    logits, cache = sampling.decode_step(model, params, cache, tokens[:, t], t)
    np.testing.assert_allclose(logits, full[:, t], atol=1e-5, err_msg=f"position {t}")


def test_greedy_generation_extends_the_prompt_with_the_argmax(decoder):
  model, params = decoder
  prompt = jnp.asarray([[2, 7, 9], [2, 11, 5]], jnp.int32)
  out = sampling.generate(
    model, params, prompt, jax.random.key(0), max_new_tokens=5, temperature=0.0
  )
  np.testing.assert_array_equal(out[:, :3], prompt)
  tokens = prompt
  for _ in range(5):  # The slow way: recompute everything, append the argmax.
    next_token = jnp.argmax(_full_logits(model, params, tokens)[:, -1], -1)
    tokens = jnp.concatenate([tokens, next_token[:, None].astype(jnp.int32)], 1)
  np.testing.assert_array_equal(out, tokens)
  # top_k=1 sampling at any temperature is greedy; sampling is deterministic per key.
  top1 = sampling.generate(model, params, prompt, jax.random.key(5), 5, temperature=1.5, top_k=1)
  np.testing.assert_array_equal(top1, out)
  a = sampling.generate(model, params, prompt, jax.random.key(1), 5, temperature=1.0)
  np.testing.assert_array_equal(
    a, sampling.generate(model, params, prompt, jax.random.key(1), 5, temperature=1.0)
  )


def test_top_k_and_top_p_filters():
  logits = jnp.log(jnp.asarray([[0.5, 0.2, 0.15, 0.1, 0.05]]))
  keep = lambda **kw: np.isfinite(np.asarray(sampling.filter_logits(logits, **kw)))[0].tolist()
  assert keep(top_k=2) == [True, True, False, False, False]
  # Nucleus 0.8: 0.5 + 0.2 = 0.7 < 0.8, so the 0.15 token that crosses 0.8 is kept too.
  assert keep(top_p=0.8) == [True, True, True, False, False]
  assert keep(top_p=0.5) == [True, False, False, False, False]
  assert keep(top_k=0, top_p=1.0) == [True] * 5


# --- The causal LM task ------------------------------------------------------------------------


def test_next_token_targets_skip_padding_and_document_boundaries():
  from ssl_jax.tasks.causal_lm import next_token_targets

  tokens = jnp.asarray([[2, 10, 11, 3, 2, 20, 3, 0]])
  segments = jnp.asarray([[1, 1, 1, 1, 2, 2, 2, 0]])
  targets, weights = next_token_targets(tokens, tokens != 0, segments)
  np.testing.assert_array_equal(targets, tokens[:, 1:])
  # Position 3 ([SEP] of doc 1) must not predict doc 2's [CLS]; position 6 must not predict pad.
  np.testing.assert_array_equal(weights, [[1, 1, 1, 0, 1, 1, 0]])


def test_causal_lm_config_trains_evaluates_and_samples(tmp_path, devices):
  """The shipped GPT config, shrunk: loss is the weighted next-token NLL, the evaluator reports
  perplexity = exp(loss) beside the unigram model, and samples continue held-out prompts."""
  from conftest import load_config, override

  from ssl_jax import train

  config = override(
    load_config("gpt_python_text"),
    {
      "model_kwargs.width": 32,
      "model_kwargs.depth": 1,
      "model_kwargs.num_heads": 2,
      "model_kwargs.mlp_dim": 64,
      "data.seq_len": 32,
      "data.vocab_size": 500,
      "data.stdlib_docstrings": False,
      "batch_size": 16,
      "eval_batch_size": 32,
      "total_steps": 4,
      "log_every": 2,
      "checkpoint_every": 2,
      "optim.warmup_steps": 1,
      "evals.lm_samples.max_new_tokens": 8,
      "evals.lm_samples.num_samples": 2,
    },
  )
  results = train.train_and_evaluate(config, str(tmp_path))
  lm = results["evals"]["causal_lm"]
  for row in ("causal_lm", "unigram (train token frequencies)"):
    assert lm[row]["perplexity"] == pytest.approx(np.exp(lm[row]["loss"]), rel=1e-6)
  # After 4 steps from a uniform start the model is still near log(vocab); the unigram is not.
  assert lm["causal_lm"]["loss"] == pytest.approx(np.log(500), abs=0.5)
  assert lm["unigram (train token frequencies)"]["loss"] < np.log(500) - 0.5
  samples = results["evals"]["lm_samples"]
  assert sorted(samples) == ["sample 1", "sample 2"]
  assert all(" ⟶ " in row["prompt ⟶ continuation"] for row in samples.values())


def test_causal_lm_refuses_a_bidirectional_encoder():
  from conftest import load_config

  from ssl_jax import train
  from ssl_jax.registry import ConfigError

  config = load_config("gpt_python_text")
  config.model = "transformer_encoder"
  config.data.stdlib_docstrings = False
  config.data.vocab_size = 300
  dataset = train.build_dataset(config, None)
  with pytest.raises(ConfigError, match="needs a causal model.*transformer_decoder"):
    train.build_task(config, dataset)

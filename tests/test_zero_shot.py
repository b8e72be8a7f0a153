"""Zero-shot scores equal log-likelihoods computed by hand, one prefix at a time."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.adapt import zero_shot
from ssl_jax.data import tokenizer as tok
from ssl_jax.models.transformer import TransformerDecoder, TransformerEncoder
from ssl_jax.tasks.mlm import MaskedLMModel

PAD = 0


@pytest.fixture(scope="module")
def decoder():
  model = TransformerDecoder(vocab_size=30, size="tiny", max_length=16, dropout_rate=0.0)
  tokens = jnp.ones((1, 16), jnp.int32)
  variables = model.init(jax.random.key(0), tokens, tokens > 0, train=False)
  return model, variables["params"]


def test_causal_scores_match_a_prefix_by_prefix_computation(decoder):
  model, params = decoder
  prompts = [[2, 7, 9, 11], [2, 5], [2, 13, 14, 15, 16, 17]]
  verbalizers = [[20], [21, 22, 23], [24, 25]]

  def by_hand(prompt, verbalizer):
    total = 0.0
    for k, token in enumerate(verbalizer):
      prefix = jnp.asarray([list(prompt) + list(verbalizer[:k])])
      hidden = model.apply({"params": params}, prefix, prefix > 0, train=False)
      logits = model.apply({"params": params}, hidden[:, -1], method=lambda m, h: m.attend(h))
      total += float(jax.nn.log_softmax(logits)[0, token])
    return total

  task = types.SimpleNamespace(model=model)
  scores = zero_shot.continuation_scores(
    zero_shot.causal_log_probs_fn(task, params, {}), prompts, verbalizers, PAD
  )
  expected = np.asarray([[by_hand(p, v) for v in verbalizers] for p in prompts])
  np.testing.assert_allclose(scores["sum"], expected, atol=1e-5)
  np.testing.assert_allclose(scores["per_token"], expected / np.asarray([1, 3, 2]), atol=1e-5)
  assert scores["sum"].shape == (3, 3) and (scores["sum"] < 0).all()


def test_masked_scores_match_the_head_at_the_mask():
  encoder = TransformerEncoder(vocab_size=30, size="tiny", max_length=16, dropout_rate=0.0)
  model = MaskedLMModel(encoder)
  tokens = jnp.ones((1, 16), jnp.int32)
  params = model.init(
    jax.random.key(0), tokens, tokens > 0, jnp.zeros((1, 1), jnp.int32), train=False
  )["params"]
  prompts = [[2, 9, tok.MASK_ID, 10, 3], [2, 11, 12, 13, tok.MASK_ID, 3, 14]]
  verbalizer_ids = [20, 21, 25]
  task = types.SimpleNamespace(model=model)
  scores = zero_shot.masked_scores(
    zero_shot.masked_log_probs_fn(task, params, {}), prompts, tok.MASK_ID, verbalizer_ids, PAD
  )
  for i, prompt in enumerate(prompts):
    row = jnp.asarray([prompt])
    logits = model.apply(
      {"params": params}, row, row > 0, jnp.asarray([[prompt.index(tok.MASK_ID)]]), train=False
    )
    expected = jax.nn.log_softmax(logits[0, 0])[np.asarray(verbalizer_ids)]
    np.testing.assert_allclose(scores[i], expected, atol=1e-5)
  with pytest.raises(ValueError, match="Prompt 0 has 2 \\[MASK\\] tokens"):
    zero_shot.masked_scores(lambda *a: None, [[tok.MASK_ID, tok.MASK_ID]], tok.MASK_ID, [5], PAD)


def test_verbalizer_errors(tmp_path):
  with pytest.raises(ValueError, match="at least one token"):
    zero_shot.continuation_scores(lambda t, v: None, [[2]], [[3], []], PAD)
  text = ["the cat sat on the mat", "a dog and a cat", "unbelievable things happen"] * 20
  tokenizer = tok.train_tokenizer(text, str(tmp_path / "t.model"), 28)
  ids = zero_shot.single_token_verbalizers(tokenizer, ["cat"])
  assert tokenizer.decode(ids) == "cat"
  with pytest.raises(ValueError, match="'unbelievable' is [0-9]+ pieces"):
    zero_shot.single_token_verbalizers(tokenizer, ["unbelievable"])

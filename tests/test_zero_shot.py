"""Zero-shot scores equal log-likelihoods computed by hand, one prefix at a time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.adapt import zero_shot
from ssl_jax.data import tokenizer as tok
from ssl_jax.models.transformer import TransformerDecoder, TransformerEncoder
from ssl_jax.registry import ConfigError
from ssl_jax.tasks.mlm import MaskedLMModel

PROMPT = [9, 11]  # the prompt's pieces
WORDS = [[20], [21, 22, 23], [24, 25]]  # each class's word pieces
ROWS = [[tok.CLS_ID, 7, 8, tok.SEP_ID, 0, 0], [tok.CLS_ID, 13, 14, 15, 16, tok.SEP_ID]]


def _prompt(kind, scoring="sum", length=16):
  width = max(len(w) for w in WORDS)
  verbalizers = np.zeros((len(WORDS), width), np.int32)
  for c, word in enumerate(WORDS):
    verbalizers[c, : len(word)] = word
  lengths = np.asarray([len(w) for w in WORDS], np.float32)
  return zero_shot.ZeroShotPrompt(
    kind,
    scoring,
    np.asarray(PROMPT, np.int32),
    verbalizers,
    lengths,
    length,
    tok.PAD_ID,
    tok.CLS_ID,
    tok.SEP_ID,
    tok.MASK_ID,
  )


def _text(row):
  return [t for t in row if t != 0][:-1]  # [CLS] + text, without [SEP] and padding


@pytest.fixture(scope="module")
def decoder():
  model = TransformerDecoder(vocab_size=30, size="tiny", max_length=16, dropout_rate=0.0)
  tokens = jnp.ones((1, 16), jnp.int32)
  return model, model.init(jax.random.key(0), tokens, tokens > 0, train=False)["params"]


@pytest.mark.e2e
def test_causal_scores_match_a_prefix_by_prefix_computation(decoder):
  model, params = decoder

  def by_hand(prefix, word):
    total = 0.0
    for k, piece in enumerate(word):
      sequence = jnp.asarray([list(prefix) + list(word[:k])])
      hidden = model.apply({"params": params}, sequence, sequence > 0, train=False)
      logits = model.apply({"params": params}, hidden[:, -1], method=lambda m, h: m.attend(h))
      total += float(jax.nn.log_softmax(logits)[0, piece])
    return total

  encode = lambda t, v: model.apply({"params": params}, t, v, train=False)
  attend = lambda h: model.apply({"params": params}, h, method=lambda m, x: m.attend(x))
  tokens = jnp.asarray(ROWS)
  expected = np.asarray([[by_hand(_text(r) + PROMPT, w) for w in WORDS] for r in ROWS])
  scores = {
    s: np.asarray(zero_shot.causal_scores(_prompt(zero_shot.CAUSAL, s), encode, attend, tokens))
    for s in zero_shot.SCORINGS
  }
  np.testing.assert_allclose(scores["sum"], expected, atol=1e-5)
  np.testing.assert_allclose(scores["per_token"], expected / np.asarray([1, 3, 2]), atol=1e-5)
  alone = np.asarray([by_hand([tok.CLS_ID] + PROMPT, w) for w in WORDS])
  np.testing.assert_allclose(scores["pmi"], expected - alone, atol=1e-5)
  assert scores["sum"].shape == (2, 3) and (scores["sum"] < 0).all()


def test_masked_scores_match_the_head_at_the_mask():
  encoder = TransformerEncoder(vocab_size=30, size="tiny", max_length=16, dropout_rate=0.0)
  model = MaskedLMModel(encoder)
  tokens = jnp.ones((1, 16), jnp.int32)
  params = model.init(
    jax.random.key(0), tokens, tokens > 0, jnp.zeros((1, 1), jnp.int32), train=False
  )["params"]
  prompt = _prompt(zero_shot.PET)

  def log_probs(rows, positions):
    logits = model.apply({"params": params}, rows, rows > 0, positions[:, None], train=False)
    return jax.nn.log_softmax(logits[:, 0])

  scores = np.asarray(zero_shot.pet_scores(prompt, log_probs, jnp.asarray(ROWS)))
  for i, row in enumerate(ROWS):
    sequence = jnp.asarray([_text(row) + PROMPT + [tok.MASK_ID, tok.SEP_ID]])
    logits = model.apply(
      {"params": params},
      sequence,
      sequence > 0,
      jnp.asarray([[sequence.shape[1] - 2]]),
      train=False,
    )
    expected = jax.nn.log_softmax(logits[0, 0])[np.asarray([20, 21, 24])]
    np.testing.assert_allclose(scores[i], expected, atol=1e-5)


def test_verbalizer_errors(tmp_path):
  text = ["the cat sat on the mat", "a dog and a cat", "unbelievable things happen"] * 20
  tokenizer = tok.train_tokenizer(text, str(tmp_path / "t.model"), 28)
  ids = zero_shot.single_token_verbalizers(tokenizer, ["cat"])
  assert tokenizer.decode(ids) == "cat"
  with pytest.raises(ConfigError, match="'unbelievable' is [0-9]+ pieces"):
    zero_shot.single_token_verbalizers(tokenizer, ["unbelievable"])
  with pytest.raises(ConfigError, match="Unknown config.task_kwargs.scoring 'mean'"):
    zero_shot.ZeroShotPrompt.build(tokenizer, " is", ["cat"], zero_shot.CAUSAL, "mean", 8, 16)

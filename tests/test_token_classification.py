"""Token classification end to end on CoNLL files the test writes: a tagger trained from
scratch learns a tagging rule (entity F1 in both modes), prompt tuning's reserved positions are
moved back onto their tokens, and bad data paths get one clear error."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config, override, tiny_mlm_config

from ssl_jax import train
from ssl_jax.adapt.peft import build_peft
from ssl_jax.data.token_tags import conll_files
from ssl_jax.errors import UserError

NAMES = ["alice", "bob", "carol", "dave", "erin"]
SURNAMES = ["smith", "jones", "brown"]
PLACES = ["paris", "rome", "oslo"]
FILLER = ["the", "report", "was", "sent", "to", "by", "from", "and", "today", "met"]


def write_conll(path, sentences: int, seed: int):
  """Sentences of filler words with people (B-PER, then I-PER on a surname) and places
  (B-LOC): which word is an entity is learnable from the word itself."""
  rng = np.random.default_rng(seed)
  lines = []
  for _ in range(sentences):
    for _ in range(rng.integers(4, 9)):
      kind = rng.random()
      if kind < 0.2:
        lines += [f"{rng.choice(NAMES)} B-PER"]
        if rng.random() < 0.5:
          lines += [f"{rng.choice(SURNAMES)} I-PER"]
      elif kind < 0.3:
        lines += [f"{rng.choice(PLACES)} B-LOC"]
      else:
        lines += [f"{rng.choice(FILLER)} O"]
    lines.append("")
  path.write_text("\n".join(lines))
  return str(path)


@pytest.fixture(scope="module")
def conll(tmp_path_factory):
  root = tmp_path_factory.mktemp("conll")
  return write_conll(root / "train.txt", 300, 0), write_conll(root / "test.txt", 60, 1)


def tagger_config(train_path, test_path, **overrides):
  """The shipped config, from scratch, with a 1-block width-32 encoder."""
  config = load_config("tag_conll_files")
  config.task_kwargs.init_from = ""
  config.model_kwargs.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64, dropout_rate=0.0))
  config.data.update(
    dict(train_path=train_path, test_path=test_path, seq_len=24, vocab_size=40, tokenizer_path="")
  )
  config.optim.update(dict(learning_rate=3e-3, warmup_steps=10))
  config.update(dict(total_steps=150, batch_size=32, eval_batch_size=32, checkpoint_every=150))
  return override(config, overrides)


@pytest.mark.e2e
def test_a_tagger_from_scratch_learns_the_entities(conll, tmp_path):
  results = train.train_and_evaluate(tagger_config(*conll), str(tmp_path))
  table = results["evals"]["token_classification"]
  ours, baseline = table["token_classification"], table['all "O"']
  assert baseline["entity F1 (conlleval)"] == 0.0 and 0.55 < baseline["word acc"] < 0.85
  assert ours["entity F1 (conlleval)"] > 0.95 and ours["entity F1 (strict)"] > 0.95
  assert ours["word acc"] > 0.97
  assert ours["F1 PER"] > 0.95 and ours["F1 LOC"] > 0.95 and baseline["F1 PER"] == 0.0


def test_prompt_slots_are_moved_back_onto_their_tokens():
  peft = build_peft({"name": "prompt", "length": 3, "start": 1}, "text")
  tokens = jnp.arange(10)[None] + 10  # ids 10..19 at positions 0..9
  prepared = peft.prepare_tokens(tokens, placeholder=4)
  # A per-position output that is the token id itself, moved back, is the original row;
  # the 3 tokens the prompt pushed out get the fill.
  restored = peft.restore_positions(prepared[..., None], jnp.array([-1]))[..., 0]
  np.testing.assert_array_equal(restored[0, :7], np.arange(10, 17))
  np.testing.assert_array_equal(restored[0, 7:], -1)
  lora = build_peft({"name": "lora"}, "text")
  np.testing.assert_array_equal(lora.restore_positions(tokens, jnp.zeros(())), tokens)


def test_missing_and_bad_files_are_named(conll, tmp_path):
  train_path, test_path = conll
  with pytest.raises(UserError, match="test_path is empty"):
    conll_files(str(tmp_path), train_path=train_path)
  with pytest.raises(UserError, match=r"validation_path='/nope.txt' does not exist"):
    conll_files(
      str(tmp_path), train_path=train_path, test_path=test_path, validation_path="/nope.txt"
    )
  bad = tmp_path / "bad.txt"
  bad.write_text("alice PERSON\n")
  with pytest.raises(UserError, match=r"bad.txt:1: tag 'PERSON'"):
    conll_files(str(tmp_path), train_path=str(bad), test_path=test_path)


@pytest.mark.e2e
def test_prompt_tuning_a_pretrained_encoder_tags_through_the_prompt(conll, tmp_path):
  pretraining = str(tmp_path / "mlm")
  train.train_and_evaluate(tiny_mlm_config(evals={}), pretraining)
  config = tagger_config(
    *conll,
    **{
      "task_kwargs.init_from": pretraining,
      "task_kwargs.method": "peft",
      "task_kwargs.peft": {"name": "prompt", "length": 4},
      "data.tokenizer_path": f"{pretraining}/tokenizer.model",
      "total_steps": 60,
      "checkpoint_every": 60,
      "optim.learning_rate": 3e-2,
    },
  )
  config.model_kwargs = {}  # the pretraining run's architecture
  results = train.train_and_evaluate(config, str(tmp_path / "tagger"))
  table = results["evals"]["token_classification"]
  ours, baseline = table["token_classification"], table['all "O"']
  # Only the prompt and the head train on a frozen, barely pretrained encoder: the tags still
  # land on their words (a misaligned prompt shift would leave it at or below the baseline).
  assert ours["word acc"] > baseline["word acc"] + 0.03
  assert ours["entity F1 (conlleval)"] > 0.1


def test_a_tagger_is_not_a_row_classifier(conll):
  """Tags are not row labels: the row-label evaluators refuse the task before any work."""
  from ssl_jax.config_base import validate_config
  from ssl_jax.errors import ConfigError

  for evaluator, capability in (("classification", "Classifier"), ("robustness", "Attackable")):
    config = tagger_config(*conll)
    config.evals = {evaluator: {}}
    with pytest.raises(ConfigError, match=f"Evaluator '{evaluator}'.*{capability}"):
      validate_config(config)


def test_rows_shorter_than_the_sentences_still_score_every_test_word(conll, tmp_path):
  """seq_len 8 on the CoNLL files: sentences become windows, and the evaluator's words (its
  owned first pieces joined by sentence) are the test file's, every entity included."""
  from ssl_jax.data.token_tags import read_conll
  from ssl_jax.evals.token_classification import word_tags

  data = conll_files(
    str(tmp_path), train_path=conll[0], test_path=conll[1], seq_len=8, vocab_size=40
  )
  rows, names = data.split("test"), list(data.info["tag_names"])
  expected = [tags for _, tags in read_conll(conll[1])]
  assert len(rows["tokens"]) > len(expected)  # some sentences needed several windows
  assert word_tags(rows["tags"], rows["first_piece"], names, rows["sentence"]) == expected

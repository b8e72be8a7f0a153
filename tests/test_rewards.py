"""Rewards and prompt data: the rule-based rewards on decoded text, their weighted sum inside
jit on 8 devices, prompts from the user's files, and the learned (classifier) reward against
the classifier's own probabilities."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

from ssl_jax import train
from ssl_jax.data import tokenizer as tok
from ssl_jax.data.text_classification import encode_rows
from ssl_jax.data.text_prompts import text_prompts
from ssl_jax.errors import ConfigError
from ssl_jax.registry import TASKS
from ssl_jax.rewards.base import REWARDS, RewardContext, WeightedRewards, join_prompt_completion
from ssl_jax.rewards.classifier import ClassifierProbability
from ssl_jax.runs.checkpoints import Checkpointer
from ssl_jax.runs.finished import read_config, shape_only_dataset

LINES = ["open the file and read it", "the profile of a logger", "return a list of strings"] * 30


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tok") / "t.model")
  return tok.train_tokenizer(LINES, path, vocab_size=28)


def _context(tokenizer, info=None):
  info = {"tokenizer_path": tokenizer.path, **(info or {})}
  return RewardContext(info, tokenizer, tok.SEP_ID, tok.PAD_ID, 12, 32)


def _completions(tokenizer, texts, width=32, eos=True):
  rows = np.full((len(texts), width), tok.PAD_ID, np.int32)
  for r, ids in enumerate(tokenizer.encode(texts)):
    ids = ids + [tok.SEP_ID] if eos else ids
    rows[r, : len(ids)] = ids[:width]
  return rows


def test_keyword_and_regex_read_the_decoded_completion(tokenizer):
  texts = ["open the file", "the profile", "a list of file strings"]
  completions = _completions(tokenizer, texts)
  keyword = REWARDS.build("keyword", {"keywords": "file"}, _context(tokenizer))
  np.testing.assert_array_equal(keyword(None, completions, {}), [1, 0, 1])  # not "profile"
  anywhere = REWARDS.build(
    "keyword", {"keywords": "file", "whole_words": False}, _context(tokenizer)
  )
  np.testing.assert_array_equal(anywhere(None, completions, {}), [1, 1, 1])
  both = REWARDS.build("keyword", {"keywords": "file, list"}, _context(tokenizer))
  np.testing.assert_allclose(both(None, completions, {}), [0.5, 0, 1])
  regex = REWARDS.build("regex", {"pattern": r"^the "}, _context(tokenizer))
  np.testing.assert_array_equal(regex(None, completions, {}), [0, 1, 0])
  with pytest.raises(ConfigError, match="names no keyword"):
    REWARDS.build("keyword", {"keywords": " , "}, _context(tokenizer))


def test_target_length_counts_tokens_before_the_eos(tokenizer):
  completions = np.full((3, 8), tok.PAD_ID, np.int32)
  completions[0, :5] = [7, 7, 7, 7, tok.SEP_ID]  # 4 tokens
  completions[1, :3] = [7, 7, tok.SEP_ID]  # 2 tokens
  completions[2, :8] = 7  # 8 tokens, truncated
  reward = REWARDS.build("target_length", {"length": 4}, _context(tokenizer))
  np.testing.assert_allclose(reward(None, jnp.asarray(completions), {}), [1.0, 0.5, 0.0])


def test_weighted_sum_of_host_and_device_rewards_inside_jit(tokenizer, devices):
  rewards = WeightedRewards(
    {"keyword": {"weight": 2.0, "keywords": "file"}, "target_length": {"weight": 0.5, "length": 4}},
    _context(tokenizer),
  )
  texts = ["open the file", "the profile", "a list of file strings", "return"] * 2
  completions = jnp.asarray(_completions(tokenizer, texts))
  mesh = jax.make_mesh((8,), ("data",))
  sharded = jax.device_put(completions, jax.sharding.NamedSharding(mesh, jax.P("data")))
  total, parts = jax.jit(lambda c: rewards(jnp.zeros((8, 2), jnp.int32), c, {}))(sharded)
  keyword = np.array([1, 0, 1, 0] * 2, np.float32)
  lengths = np.array([len(ids) for ids in tokenizer.encode(texts)])
  target = np.maximum(0, 1 - np.abs(lengths - 4) / 4)
  np.testing.assert_allclose(parts["keyword"], keyword)
  np.testing.assert_allclose(parts["target_length"], target, rtol=1e-6)
  np.testing.assert_allclose(total, 2.0 * keyword + 0.5 * target, rtol=1e-6)


def test_join_prompt_completion_keeps_positions_contiguous():
  prompts = jnp.array([[2, 5, 0], [2, 6, 7]])
  completions = jnp.array([[8, 3, 0], [9, 0, 0]])
  joined = join_prompt_completion(prompts, jnp.array([2, 3]), completions, 0)
  np.testing.assert_array_equal(joined, [[2, 5, 8, 3, 0, 0], [2, 6, 7, 9, 0, 0]])


def test_text_prompts_from_a_users_jsonl_file(tokenizer, tmp_path):
  path = tmp_path / "prompts.jsonl"
  records = [{"text": f"open the file number {i} and read it"} for i in range(40)]
  records.append({"text": "a"})
  path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
  data = text_prompts(
    paths=str(path),
    format="jsonl",
    prompt_tokens=4,
    tokenizer_path=tokenizer.path,
    test_percent=30,
  )
  rows = {s: data.split(s) for s in ("train", "test")}
  assert len(rows["train"]["prompt"]) + len(rows["test"]["prompt"]) == 41
  assert len(rows["test"]["prompt"]) > 0
  for split in rows.values():
    prompts, lengths = split["prompt"], split["prompt_length"]
    assert prompts.shape[1] == 5 and np.all(prompts[:, 0] == tok.CLS_ID)
    for row, n in zip(prompts, lengths):
      assert np.all(row[n:] == tok.PAD_ID) and np.all(row[:n] != tok.PAD_ID)
  every = np.concatenate([rows["train"]["prompt_length"], rows["test"]["prompt_length"]])
  first = tokenizer.encode(["open the file number 0 and read it"])[0][:4]
  assert min(every) == 1 + len(tokenizer.encode(["a"])[0]) < 5  # a short document stays short
  train_rows = rows["train"]["prompt"].tolist() + rows["test"]["prompt"].tolist()
  assert [tok.CLS_ID, *first] in train_rows
  with pytest.raises(ConfigError, match="tokenizer_path is empty"):
    text_prompts(paths=str(path), format="jsonl")


@pytest.fixture(scope="module")
def gpt_and_classifier(tmp_path_factory, gpt_workdir):
  """The shared 2-step GPT on the pydoc topics (conftest) and a 4-step python_packages
  classifier from it."""
  gpt = gpt_workdir
  config = load_config("classify_python_packages")
  config.task_kwargs.init_from = gpt
  config.model = "transformer_decoder"
  config.data.update(dict(seq_len=24, tokenizer_path=os.path.join(gpt, "tokenizer.model")))
  config.batch_size, config.eval_batch_size = 16, 32
  config.total_steps, config.log_every, config.checkpoint_every = 4, 2, 4
  config.optim.warmup_steps = 1
  config.evals = {}
  classifier = str(tmp_path_factory.mktemp("classifier"))
  train.train_and_evaluate(config, classifier)
  return gpt, classifier


@pytest.mark.e2e
def test_classifier_reward_is_the_classifiers_probability(gpt_and_classifier):
  gpt, classifier = gpt_and_classifier
  tokenizer = tok.load_tokenizer(os.path.join(gpt, "tokenizer.model"))
  context = _context(tokenizer)
  reward = ClassifierProbability(context, workdir=classifier, target_class="logging")
  prompts_text, completions_text = ["Return the", "the"], ["value", "return the value"]
  assert all(len(ids) < 6 for ids in tokenizer.encode(prompts_text + completions_text))
  prompts = np.full((2, 16), tok.PAD_ID, np.int32)
  lengths = []
  for r, ids in enumerate(tokenizer.encode(prompts_text)):
    prompts[r, : len(ids) + 1] = [tok.CLS_ID, *ids]
    lengths.append(len(ids) + 1)
  completions = _completions(tokenizer, completions_text, width=8)
  scores = reward(
    jnp.asarray(prompts), jnp.asarray(completions), {"prompt_length": jnp.array(lengths)}
  )
  # By hand: the classifier's own rows of the joined texts ([CLS] text [SEP], padded to 24).
  config = read_config(classifier)
  task = TASKS.build(
    config.task, config.task_kwargs.to_dict(), config, shape_only_dataset(config, _like())
  )
  checkpoints = Checkpointer(os.path.join(classifier, "checkpoints"), read_only=True)
  _, state = checkpoints.restore_latest_arrays()
  checkpoints.close()
  ids = [
    [*tokenizer.encode([p])[0], *tokenizer.encode([c])[0]]
    for p, c in zip(prompts_text, completions_text)
  ]
  rows = np.full((2, 24), tok.PAD_ID, np.int32)
  for r, piece_ids in enumerate(ids):
    rows[r, : len(piece_ids) + 2] = [tok.CLS_ID, *piece_ids, tok.SEP_ID]
  logits = task.logits(
    state["params"], state.get("model_state") or {}, {"tokens": rows}, None, False
  )
  names = config.dataset_info.class_names
  expected = jax.nn.softmax(logits, -1)[:, list(names).index("logging")]
  np.testing.assert_allclose(scores, expected, atol=1e-5)
  assert encode_rows  # the classifier's training rows use the same [CLS] ... [SEP] layout
  with pytest.raises(ConfigError, match="target_class='lgging'"):
    ClassifierProbability(context, workdir=classifier, target_class="lgging")
  with pytest.raises(ConfigError, match="Classifier"):
    ClassifierProbability(context, workdir=gpt, target_class="logging")


def _like():
  from ssl_jax.data.source import Dataset

  return Dataset({"train": {"tokens": np.zeros((1, 2), np.int32)}}, "text", info={})

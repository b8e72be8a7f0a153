"""The reward task end to end on the toy suite: a tiny GPT pretrained on random walks, then
fine-tuned on the shortest-path reward through the trainer."""

import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import load_config, override

from ssl_jax import parallel, train
from ssl_jax.config_base import resolve_defaults, validate_config
from ssl_jax.data.random_walks import distances_to_goal, random_graph
from ssl_jax.errors import ConfigError, UserError
from ssl_jax.rewards.path import score_path
from ssl_jax.runs.finished import load_finished_run


def tiny_walks_pretraining(**overrides):
  config = load_config("gpt_random_walks")
  config.model_kwargs.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
  config.data.num_walks = 1500
  config.total_steps = 200
  config.log_every = 100
  config.checkpoint_every = 200
  config.evals = {"causal_lm": {}}
  return override(config, overrides)


@pytest.fixture(scope="module")
def walks_gpt(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("gpt_walks"))
  train.train_and_evaluate(tiny_walks_pretraining(), workdir)
  return workdir


def tiny_reward_config(pretraining, **overrides):
  config = load_config("reward_random_walks")
  config.task_kwargs.init_from = pretraining
  config.data.tokenizer_path = os.path.join(pretraining, "tokenizer.model")
  config.data.repeats = 4
  config.task_kwargs.max_new_tokens = 16
  config.total_steps = 4
  config.batch_size = 8
  config.log_every = 2
  config.checkpoint_every = 2
  config.evals = {"reward": {"samples_per_prompt": 2, "show": 1}}
  return override(config, overrides)


def _saved_state(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(path)


def test_shortest_path_scores_by_hand():
  edges = [set(), {0, 2}, {0}, {1}]  # 1 -> 0, 1 -> 2, 2 -> 0, 3 -> 1; goal 0
  distance = [0, 1, 1, 2]
  assert score_path([3, 1, 0], edges, 0, distance) == 1.0
  assert score_path([1, 2, 0], edges, 0, distance) == 0.5
  assert score_path([3, 0], edges, 0, distance) == 0.0  # not an edge
  assert score_path([1, 2], edges, 0, distance) == 0.0  # does not reach the goal
  assert score_path([1], edges, 0, distance) == 0.0
  graph = random_graph(21, 0.3, 1002)
  assert all(d > 0 for d in distances_to_goal(graph)[1:])  # every node reaches the goal


def test_toy_suite_learns_shortest_paths_with_rloo(walks_gpt, tmp_path):
  config = tiny_reward_config(walks_gpt, total_steps=40, log_every=20, checkpoint_every=40)
  config.evals = {"reward": {"samples_per_prompt": 4, "show": 1}}
  results = train.train_and_evaluate(config, str(tmp_path))
  table = results["evals"]["reward"]
  before, after = table["reference (before)"], table["reward_finetuning"]
  assert after["success"] > before["success"] + 0.25, table
  assert after["reward"] > before["reward"]
  assert after["kl"] > 0 and before["kl"] == pytest.approx(0.0, abs=1e-6)
  assert after["length"] < before["length"]  # shortest paths are short
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  for key in (
    "reward",
    "reward_std",
    "kl",
    "completion_length",
    "zero_variance_groups",
    "clip_fraction",
    "entropy",
    "reward/shortest_path",
  ):
    assert key in records[-1], key
  assert records[-1]["clip_fraction"] == 0.0  # fresh samples every step: ratio 1
  assert results["task_weights"]["reference"].startswith(os.path.join(walks_gpt, "checkpoints"))


def _setup(config, workdir):
  resolve_defaults(config)
  validate_config(config)
  mesh = parallel.make_mesh(config.mesh)
  return mesh, train.setup(config, workdir, mesh)


@pytest.mark.e2e
def test_reference_never_changes_and_beta_zero_has_no_reference_in_the_step(walks_gpt, tmp_path):
  pretrained = load_finished_run(walks_gpt, _prompts_like(walks_gpt)).variables
  for beta in (0.05, 0.0):
    config = tiny_reward_config(walks_gpt, **{"task_kwargs.beta": beta})
    mesh, run = _setup(config, str(tmp_path / f"beta{beta}"))
    with jax.set_mesh(mesh):
      task, state = run.task, run.state
      batch = jax.tree.map(np.asarray, run.example)
      reference_leaves = jax.tree.leaves(task.reference_params())
      jaxpr = jax.make_jaxpr(lambda p, s, b: task.loss_fn(p, s, b, jax.random.key(0), state.step))(
        state.params, state.model_state, batch
      )
      used = {id(c) for c in jaxpr.consts}
      uses_reference = any(id(leaf) in used for leaf in reference_leaves)
      assert uses_reference == (beta > 0)
      for _ in range(3):
        state, _ = run.train_step(state, run.example)
      after = jax.tree.leaves(task.reference_params())
      for leaf, original in zip(after, jax.tree.leaves(pretrained["params"])):
        np.testing.assert_array_equal(np.asarray(leaf), original)
      moved = [
        not np.array_equal(np.asarray(a), b)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(pretrained["params"]))
      ]
      assert any(moved)


def _prompts_like(pretraining):
  from ssl_jax.data.random_walks import random_walk_prompts

  return random_walk_prompts(tokenizer_path=os.path.join(pretraining, "tokenizer.model"))


@pytest.mark.e2e
def test_resume_inside_a_reused_batch_is_bitwise(walks_gpt, tmp_path):
  # updates_per_batch=2: step 3 reuses the samples of step 2, kept in the checkpointed state.
  config = tiny_reward_config(
    walks_gpt,
    checkpoint_every=1,
    keep_checkpoints=10,
    **{"task_kwargs.estimator.name": "grpo", "task_kwargs.estimator.updates_per_batch": 2},
  )
  config.evals = {}
  full = str(tmp_path / "full")
  train.train_and_evaluate(config, full)
  records = [json.loads(line) for line in open(os.path.join(full, "metrics.jsonl"))]
  assert records[-1]["clip_fraction"] >= 0.0
  stored = _saved_state(full, 3)["model_state"]["rollout"]
  # The batch of step 2 is the one step 3 trained on: the same completions in both states.
  np.testing.assert_array_equal(
    stored["completions"], _saved_state(full, 4)["model_state"]["rollout"]["completions"]
  )
  resumed = tmp_path / "resumed"
  shutil.copytree(os.path.join(full, "checkpoints", "3"), resumed / "checkpoints" / "3")
  train.train_and_evaluate(config, str(resumed))
  a, b = _saved_state(full, 4), _saved_state(str(resumed), 4)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
  ("overrides", "message"),
  [
    ({"task_kwargs.rewards": {"shortest_pth": {}}}, "Unknown reward 'shortest_pth'"),
    ({"task_kwargs.rewards": {}}, "rewards is empty"),
    ({"task_kwargs.group_size": 1}, "needs at least 2"),
    ({"task_kwargs.estimator.loss_type": "bnpo"}, "loss_type='bnpo'"),
    ({"task_kwargs.rewards": {"regex": {"pattern": "(("}}}, "is not a regular expression"),
    ({"task_kwargs.max_new_tokens": 100}, "exceed the policy's 64 positions"),
    ({"task_kwargs.init_from": "/nonexistent/run"}, "does not exist"),
    ({"task_kwargs.max_new_tokens": 0}, "max_new_tokens=0 is out of range: it must be >= 1"),
    ({"evals": {"reward": {"samples_per_prompt": 0}}}, "samples_per_prompt must be >= 1"),
    ({"task_kwargs.rewards": {"keyword": {"weight": -1.0}}}, "weight=-1.0 is out of range"),
  ],
)
def test_bad_settings_are_refused_before_any_work(walks_gpt, tmp_path, overrides, message):
  config = tiny_reward_config(walks_gpt)
  for key, value in overrides.items():
    override(config, {key: value})
  workdir = tmp_path / "refused"
  with pytest.raises(UserError, match=message):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_a_reward_reading_facts_the_prompts_lack_is_refused(walks_gpt, tmp_path):
  config = tiny_reward_config(walks_gpt)
  config.data = {"name": "text_prompts", "tokenizer_path": config.data.tokenizer_path}
  with pytest.raises(ConfigError, match="Reward 'shortest_path' reads"):
    train.train_and_evaluate(config, str(tmp_path / "w"))


def _experiment(workdir, pretraining):
  import subprocess
  import sys

  from conftest import REPO

  command = [
    sys.executable,
    os.path.join(REPO, "experiments", "reward_finetuning.py"),
    f"--workdir={workdir}",
    "--tasks=toy",
    "--estimators=grpo:loss_type=dr_grpo",
    "--seeds=2",
    "--steps=3",
    f"--toy_pretraining={pretraining}",
  ]
  env = {**os.environ, "XLA_FLAGS": ""}  # one device, as a user runs it
  done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(os.path.join(workdir, "reward_finetuning.json")) as f:
    return json.load(f)


@pytest.mark.e2e
def test_small_experiment_writes_the_table_and_reruns_nothing(walks_gpt, tmp_path):
  workdir = str(tmp_path / "rft")
  record = _experiment(workdir, walks_gpt)
  table = record["results"]["toy"]
  assert set(table) == {"grpo:loss_type=dr_grpo"}
  cell = table["grpo:loss_type=dr_grpo"]
  for key in ("reward_before", "reward_after", "kl", "success_after", "wall_seconds"):
    values = cell["per_seed"][key]
    assert len(values) == 2 and cell[key] == pytest.approx(np.mean(values))
    assert cell[f"{key}_std"] == pytest.approx(np.std(values))
  assert 0 <= cell["success_before"] <= 1 and cell["kl"] >= 0
  assert len(cell["curves"]["reward"]) == len(cell["curves"]["step"]) > 0
  # Seeds differ in their samples, not in the model they start from.
  assert cell["per_seed"]["reward_after"][0] != cell["per_seed"]["reward_after"][1]
  run = os.path.join(workdir, "toy", "grpo_loss_type=dr_grpo", "seed_1")
  config = json.load(open(os.path.join(run, "config.json")))
  assert config["task_kwargs"]["estimator"]["loss_type"] == "dr_grpo" and config["seed"] == 1
  with open(os.path.join(workdir, "reward_finetuning.md")) as f:
    assert "| toy | grpo:loss_type=dr_grpo |" in f.read()
  with open(os.path.join(workdir, "reward_finetuning.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  metrics = os.path.join(run, "metrics.jsonl")
  before = os.stat(metrics).st_mtime_ns
  assert _experiment(workdir, walks_gpt)["results"] == record["results"]
  assert os.stat(metrics).st_mtime_ns == before

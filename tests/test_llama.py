"""The Llama-family decoder against transformers: `LlamaForCausalLM` (grouped-query attention,
llama3 rotary scaling, untied) and `Qwen2ForCausalLM` (biases, tied embeddings) directories
made here offline give the same logits (float32, 1e-4), the key/value cache samples what
transformers' greedy `generate` does, FSDP over the mesh computes the same step, and
`causal_lm`, reward fine-tuning and export run from an imported directory."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import override, tiny_gpt_config, trained_steps
from hf_testing import embedded_texts, llama_directory

import ssl_jax.train  # noqa: F401  (registers the tasks and evaluators)
from ssl_jax.config_base import resolve_defaults
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import vocabulary_info
from ssl_jax.data.tokenizer import load_tokenizer
from ssl_jax.models import sampling
from ssl_jax.runs.finished import load_finished_run

TEXTS = embedded_texts(300)
ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
  root = tmp_path_factory.mktemp("llama_dirs")
  return {a: (str(root / a), llama_directory(str(root / a), TEXTS, a)) for a in ARCHITECTURES}


def _imported(path):
  info = vocabulary_info(load_tokenizer(path))
  like = Dataset({"train": {"tokens": np.zeros((1, 16), np.int32)}}, "text", "train", info)
  run = load_finished_run(path, like, requires=())
  return run.task.sampling_model(run.variables["params"])


def _logits(model, params, tokens):
  hidden = model.apply(
    {"params": params}, jnp.asarray(tokens), jnp.ones(tokens.shape, bool), train=False
  )
  return np.asarray(model.apply({"params": params}, hidden, method=lambda m, h: m.attend(h)))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_logits_and_cached_sampling_equal_transformers(directories, architecture):
  path, torch_model = directories[architecture]
  model, params = _imported(path)
  assert (model.kv_heads, model.num_heads, model.tie_embeddings) == (
    2,
    4,
    architecture == "Qwen2ForCausalLM",
  )
  tokens = np.random.default_rng(0).integers(3, 400, (2, 40))
  with torch.no_grad():
    expected = torch_model(input_ids=torch.from_numpy(tokens)).logits.numpy()
  np.testing.assert_allclose(_logits(model, params, tokens), expected, atol=1e-4)
  # Greedy sampling through the key/value cache (prompt prefilled token by token).
  prompt = tokens[:, :6]
  ours = sampling.generate(
    model, params, jnp.asarray(prompt, jnp.int32), jax.random.key(0), 10, 0.0
  )
  with torch.no_grad():
    theirs = torch_model.generate(
      torch.from_numpy(prompt), max_new_tokens=10, do_sample=False, min_new_tokens=10
    ).numpy()
  np.testing.assert_array_equal(np.asarray(ours)[:, -10:], theirs[:, -10:])


def test_bfloat16_computes_close_to_float32(directories):
  path, _ = directories["LlamaForCausalLM"]
  model, params = _imported(path)
  tokens = np.random.default_rng(1).integers(3, 400, (2, 24))
  full = _logits(model, params, tokens)
  half = _logits(model.clone(dtype="bfloat16"), params, tokens)
  assert jax.tree.leaves(params)[0].dtype == np.float32
  assert 0 < np.abs(half - full).max() < 0.1 * np.abs(full).max()


def _llama_lm_config(path, **overrides):
  config = tiny_gpt_config(
    **{"data.tokenizer_path": path, "init_from": path, "data.seq_len": 64, "evals": {}}
  )
  return resolve_defaults(override(config, overrides))


def test_causal_lm_from_the_directory_is_the_same_step_with_fsdp(directories):
  path, _ = directories["LlamaForCausalLM"]
  data_parallel = _llama_lm_config(path)
  sharded = _llama_lm_config(path, **{"mesh.data": 4, "mesh.fsdp": 2})
  (start, _), (end, _), metrics = trained_steps(data_parallel, steps=1)
  (_, _), (end_sharded, _), metrics_sharded = trained_steps(sharded, steps=1)
  assert sorted(start) == ["block_0", "block_1", "final_norm", "lm_head", "token_embed"]
  np.testing.assert_allclose(metrics_sharded["loss"], metrics["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(end), jax.tree.leaves(end_sharded)):
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.e2e
@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_reward_finetuning_runs_on_an_imported_llama(directories, tmp_path, estimator):
  from ssl_jax.recipes import python_reward_config

  path, _ = directories["Qwen2ForCausalLM"]
  config = python_reward_config({"keyword": {"keywords": "file"}})
  config.task_kwargs.init_from = path
  config.task_kwargs.estimator = {"name": estimator}
  config.task_kwargs.max_new_tokens = 8
  config.model = "llama_decoder"
  config.data.tokenizer_path = path
  config.data.stdlib_docstrings = False
  config.total_steps, config.batch_size, config.log_every, config.checkpoint_every = 2, 8, 1, 2
  config.evals = {"reward": {"samples_per_prompt": 2, "num_prompts": 8, "show": 1}}
  results = ssl_jax.train.train_and_evaluate(config, str(tmp_path / estimator))
  table = results["evals"]["reward"]
  # The policy moved away from the imported reference, which scores its own samples exactly.
  assert results["step"] == 2 and table["reference (before)"]["kl"] == 0.0
  assert table["reward_finetuning"]["kl"] > 0 and np.isfinite(table["reward_finetuning"]["reward"])
  assert table["reference (before)"]["reference ppl"] == table["reference (before)"]["policy ppl"]
  assert os.path.isdir(os.path.join(tmp_path, estimator, "checkpoints", "2"))


@pytest.mark.e2e
def test_export_round_trip_loads_in_transformers(directories, tmp_path):
  import transformers

  from ssl_jax import export

  for architecture in ARCHITECTURES:
    path, _ = directories[architecture]
    workdir, out = str(tmp_path / f"{architecture}_run"), str(tmp_path / architecture)
    ssl_jax.train.train_and_evaluate(_llama_lm_config(path, total_steps=2), workdir)
    export.export(workdir, out)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(loaded).__name__ == architecture
    tokens = np.random.default_rng(2).integers(3, 400, (1, 30))
    with torch.no_grad():
      theirs = loaded(input_ids=torch.from_numpy(tokens)).logits.numpy()
    model, params = _imported(out)
    np.testing.assert_allclose(_logits(model, params, tokens), theirs, atol=1e-4)


@pytest.mark.e2e
def test_zero_shot_and_fine_tuning_from_an_imported_llama(directories, tmp_path):
  """Zero-shot scoring (causal, per token) and a classification fine-tune, both from the
  imported Qwen2 directory with its tokenizer; the fine-tune starts at the file's weights."""
  from conftest import load_config
  from safetensors.numpy import load_file

  path, _ = directories["Qwen2ForCausalLM"]
  zero_shot = load_config("zero_shot_python_packages")
  zero_shot.task_kwargs.init_from = path
  zero_shot.model = "llama_decoder"
  zero_shot.data.tokenizer_path = path
  zero_shot.data.seq_len = 32
  results = ssl_jax.train.train_and_evaluate(zero_shot, str(tmp_path / "zero_shot"))
  table = results["evals"]["classification"]
  assert 0.0 <= next(iter(table.values()))["test acc"] <= 1.0
  fine_tune = load_config("classify_python_packages")
  fine_tune.task_kwargs.init_from = path
  fine_tune.model = "llama_decoder"
  fine_tune.data.tokenizer_path = path
  fine_tune.data.seq_len = 32
  fine_tune.update(dict(total_steps=2, batch_size=16, eval_batch_size=32, checkpoint_every=2))
  fine_tune.evals = {}
  (start, _), _, metrics = trained_steps(fine_tune, steps=1)
  embed = load_file(os.path.join(path, "model.safetensors"))["model.embed_tokens.weight"]
  np.testing.assert_array_equal(start["encoder"]["token_embed"]["embedding"], embed)
  assert np.isfinite(metrics["loss"])

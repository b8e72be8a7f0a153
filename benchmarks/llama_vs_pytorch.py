r"""A small Llama-family decoder, ssl_jax against transformers' PyTorch `LlamaForCausalLM`, on
the same CPU in one run: one causal-LM train step, and sampling `new_tokens` tokens with the
key/value cache (prompt prefill included); writes both times and their ratios as JSON.

  python benchmarks/llama_vs_pytorch.py --out benchmarks/results/llama_vs_pytorch.json

Defaults are the issue's shape: 4 layers, width 256, 4 query / 2 key-value heads, SwiGLU MLP
688, sequence 256, batch 8, vocabulary 1000, AdamW; sampling: 8 prompts of 16 tokens, 64 new
tokens at temperature 1. ssl_jax runs its real `causal_lm` train step (`llama_decoder`,
state donated) on `synthetic_text` rows and `ssl_jax.models.sampling.generate`; PyTorch runs
the usual Hugging Face step on the same rows (forward with labels, backward, AdamW step,
zero_grad) and `generate(do_sample=True)` with exactly `new_tokens` tokens. Both use every
core, and the timed calls alternate between the two so that load from elsewhere falls on both.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from interleaved import time_interleaved

from ssl_jax import parallel, train
from ssl_jax.config_base import base_config
from ssl_jax.metrics import write_json
from ssl_jax.models import sampling

_OUT = flags.DEFINE_string("out", "llama_vs_pytorch.json", "Where to write the JSON result.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed calls per framework and measurement.")
_WIDTH = flags.DEFINE_integer("width", 256, "Hidden width.")
_DEPTH = flags.DEFINE_integer("depth", 4, "Layers.")
_HEADS = flags.DEFINE_integer("heads", 4, "Query heads.")
_KV_HEADS = flags.DEFINE_integer("kv_heads", 2, "Key/value heads.")
_MLP = flags.DEFINE_integer("mlp_dim", 688, "SwiGLU width.")
_SEQ = flags.DEFINE_integer("seq_len", 256, "Training sequence length.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Training batch size.")
_VOCAB = flags.DEFINE_integer("vocab_size", 1000, "Vocabulary size.")
_PROMPTS = flags.DEFINE_integer("prompts", 8, "Prompts sampled from at once.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 16, "Tokens per prompt.")
_NEW = flags.DEFINE_integer("new_tokens", 64, "Tokens sampled per prompt.")


def ssl_jax_config():
  config = base_config()
  config.task = "causal_lm"
  config.model = "llama_decoder"
  config.model_kwargs.update(
    dict(
      width=_WIDTH.value,
      depth=_DEPTH.value,
      num_heads=_HEADS.value,
      num_kv_heads=_KV_HEADS.value,
      mlp_dim=_MLP.value,
      max_length=max(_SEQ.value, _PROMPT_LEN.value + _NEW.value),
    )
  )
  config.data = dict(
    name="synthetic_text", seq_len=_SEQ.value, vocab_size=_VOCAB.value, num_train=4 * _BATCH.value
  )
  config.optim.update(dict(name="adamw", learning_rate=1e-4, weight_decay=0.01))
  config.batch_size = _BATCH.value
  config.evals = {}
  return config


def ssl_jax_steps(config):
  """(train step, sampling call, the training batch's tokens, the params on the host)."""
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
    batch = parallel.global_batch(next(run.batches), run.data_sharding)
  holder = {"state": run.state}
  model, params = run.task.sampling_model(jax.device_get(run.state.params))
  prompts = jnp.asarray(
    np.random.default_rng(0).integers(5, _VOCAB.value, (_PROMPTS.value, _PROMPT_LEN.value)),
    jnp.int32,
  )

  def step():
    with jax.set_mesh(mesh):
      holder["state"], metrics = run.train_step(holder["state"], batch)
      jax.block_until_ready(metrics)

  def sample():
    jax.block_until_ready(
      sampling.generate(model, params, prompts, jax.random.key(0), _NEW.value, 1.0)
    )

  return step, sample, np.asarray(jax.device_get(batch)["tokens"]), np.asarray(prompts)


def pytorch_calls(tokens: np.ndarray, prompts: np.ndarray):
  import torch
  import transformers

  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(
    transformers.LlamaConfig(
      vocab_size=_VOCAB.value,
      hidden_size=_WIDTH.value,
      num_hidden_layers=_DEPTH.value,
      num_attention_heads=_HEADS.value,
      num_key_value_heads=_KV_HEADS.value,
      intermediate_size=_MLP.value,
      max_position_embeddings=max(_SEQ.value, _PROMPT_LEN.value + _NEW.value),
    )
  )
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
  input_ids = torch.from_numpy(tokens.astype(np.int64))
  prompt_ids = torch.from_numpy(prompts.astype(np.int64))

  def step():
    model.train()
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  def sample():
    model.eval()
    with torch.no_grad():
      model.generate(
        prompt_ids,
        do_sample=True,
        max_new_tokens=_NEW.value,
        min_new_tokens=_NEW.value,
        top_k=0,
        pad_token_id=0,
      )

  return step, sample


def summary(times: dict[str, list[float]]) -> dict[str, float]:
  ours, theirs = statistics.median(times["ssl_jax"]), statistics.median(times["pytorch"])
  return {
    "ssl_jax_seconds_median": ours,
    "pytorch_seconds_median": theirs,
    "pytorch_over_ssl_jax": theirs / ours,  # > 1: ssl_jax is faster
    "ssl_jax_seconds": times["ssl_jax"],
    "pytorch_seconds": times["pytorch"],
  }


def main(argv):
  del argv
  import torch
  import transformers

  jax_step, jax_sample, tokens, prompts = ssl_jax_steps(ssl_jax_config())
  torch_step, torch_sample = pytorch_calls(tokens, prompts)
  timed = functools.partial(time_interleaved, rounds=_STEPS.value)
  result = {
    "shape": {
      "layers": _DEPTH.value,
      "width": _WIDTH.value,
      "heads": _HEADS.value,
      "kv_heads": _KV_HEADS.value,
      "mlp_dim": _MLP.value,
      "seq_len": _SEQ.value,
      "batch_size": _BATCH.value,
      "vocab_size": _VOCAB.value,
      "prompts": _PROMPTS.value,
      "prompt_len": _PROMPT_LEN.value,
      "new_tokens": _NEW.value,
    },
    "train_step": summary(timed({"ssl_jax": jax_step, "pytorch": torch_step})),
    "sampling": summary(timed({"ssl_jax": jax_sample, "pytorch": torch_sample})),
    "cpu_count": os.cpu_count(),
    "platform": platform.platform(),
    "jax_version": jax.__version__,
    "torch_version": torch.__version__,
    "transformers_version": transformers.__version__,
  }
  write_json(_OUT.value, result)
  brief = {
    k: {m: v for m, v in r.items() if not m.endswith("seconds")}
    for k, r in result.items()
    if k in ("train_step", "sampling")
  }
  print(json.dumps(brief, indent=2))


if __name__ == "__main__":
  app.run(main)

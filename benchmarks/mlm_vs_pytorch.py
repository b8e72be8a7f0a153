r"""One BERT-small MLM train step, ssl_jax against transformers' PyTorch `BertForMaskedLM`,
same shapes, same CPU, one run; writes both times and their ratio as JSON.

  python benchmarks/mlm_vs_pytorch.py --out /tmp/mlm_vs_pytorch.json

Defaults are the issue's shape: 4 layers, width 256, 4 heads, MLP 1024, sequence 128, batch
32, vocabulary 1000, dropout 0.1, AdamW. ssl_jax runs its real `mlm` train step (masking on
device, vocabulary projection only at the masked positions, state donated); PyTorch runs the
usual Hugging Face step on the same token rows (15% masked, labels -100 elsewhere):
forward with labels, backward, AdamW step, zero_grad. Both use every core of the machine, and
the timed steps alternate between them so that load from elsewhere falls on both.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable

import jax
import numpy as np
from absl import app, flags
from interleaved import time_interleaved

from ssl_jax import parallel, train
from ssl_jax.config_base import base_config
from ssl_jax.metrics import write_json
from ssl_jax.tasks.mlm import bert_mask

_OUT = flags.DEFINE_string("out", "mlm_vs_pytorch.json", "Where to write the JSON result.")
_STEPS = flags.DEFINE_integer(
  "steps", 10, "Timed steps per framework (after 2 warm-up), alternating between the two."
)
_WIDTH = flags.DEFINE_integer("width", 256, "Hidden width.")
_DEPTH = flags.DEFINE_integer("depth", 4, "Layers.")
_HEADS = flags.DEFINE_integer("heads", 4, "Attention heads.")
_SEQ = flags.DEFINE_integer("seq_len", 128, "Sequence length.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_VOCAB = flags.DEFINE_integer("vocab_size", 1000, "Vocabulary size (sentencepiece).")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/ssl_jax_mlm_benchmark", "Tokenizer cache.")


def ssl_jax_config():
  config = base_config()
  config.task = "mlm"
  config.model = "transformer_encoder"
  config.model_kwargs.update(
    dict(
      width=_WIDTH.value,
      depth=_DEPTH.value,
      num_heads=_HEADS.value,
      mlp_dim=4 * _WIDTH.value,
      dropout_rate=0.1,
    )
  )
  config.data.update(
    dict(name="python_text", seq_len=_SEQ.value, vocab_size=_VOCAB.value, stdlib_docstrings=False)
  )
  config.optim.update(dict(name="adamw", learning_rate=1e-4, weight_decay=0.01))
  config.batch_size = _BATCH.value
  return config


def ssl_jax_step(config) -> tuple[Callable[[], None], dict, dict]:
  """ssl_jax's jitted `mlm` train step on one fixed batch, and that batch and dataset info."""
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, _WORKDIR.value, mesh)
    batch = parallel.global_batch(next(run.batches), run.data_sharding)
  holder = {"state": run.state}

  def step():
    with jax.set_mesh(mesh):
      holder["state"], metrics = run.train_step(holder["state"], batch)
      jax.block_until_ready(metrics)

  return step, jax.device_get(batch), run.dataset.info


def pytorch_step(tokens: np.ndarray, info: dict) -> Callable[[], None]:
  import torch
  import transformers

  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  model = transformers.BertForMaskedLM(
    transformers.BertConfig(
      vocab_size=info["vocab_size"],
      hidden_size=_WIDTH.value,
      num_hidden_layers=_DEPTH.value,
      num_attention_heads=_HEADS.value,
      intermediate_size=4 * _WIDTH.value,
      max_position_embeddings=_SEQ.value,
      hidden_dropout_prob=0.1,
      attention_probs_dropout_prob=0.1,
    )
  ).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
  # The same rows, masked once the BERT way (15%, 80/10/10); labels -100 where not masked.
  inputs, positions, targets, weights = map(
    np.asarray,
    bert_mask(
      jax.random.key(0),
      jax.numpy.asarray(tokens),
      special_ids=tuple(info["special_ids"]),
      mask_id=info["mask_id"],
      vocab_size=info["vocab_size"],
      max_predictions=_SEQ.value,
    ),
  )
  labels = np.full(tokens.shape, -100, np.int64)
  rows = np.arange(len(tokens))[:, None].repeat(positions.shape[1], 1)
  labels[rows[weights > 0], positions[weights > 0]] = targets[weights > 0]
  input_ids = torch.from_numpy(inputs.astype(np.int64))
  attention_mask = torch.from_numpy((tokens != info["pad_id"]).astype(np.int64))
  labels = torch.from_numpy(labels)

  def step():
    loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  return step


def main(argv):
  del argv
  config = ssl_jax_config()
  jax_step, batch, info = ssl_jax_step(config)
  times = time_interleaved(
    {"ssl_jax": jax_step, "pytorch": pytorch_step(np.asarray(batch["tokens"]), info)}, _STEPS.value
  )
  jax_times, torch_times = times["ssl_jax"], times["pytorch"]
  import torch
  import transformers

  jax_median, torch_median = statistics.median(jax_times), statistics.median(torch_times)
  result = {
    "shape": {
      "layers": _DEPTH.value,
      "width": _WIDTH.value,
      "heads": _HEADS.value,
      "seq_len": _SEQ.value,
      "batch_size": _BATCH.value,
      "vocab_size": info["vocab_size"],
    },
    "ssl_jax_step_seconds_median": jax_median,
    "pytorch_step_seconds_median": torch_median,
    "pytorch_over_ssl_jax": torch_median / jax_median,  # > 1: ssl_jax is faster
    "ssl_jax_step_seconds": jax_times,
    "pytorch_step_seconds": torch_times,
    "cpu_count": os.cpu_count(),
    "platform": platform.platform(),
    "jax_version": jax.__version__,
    "torch_version": torch.__version__,
    "transformers_version": transformers.__version__,
  }
  write_json(_OUT.value, result)
  print(json.dumps({k: v for k, v in result.items() if not k.endswith("seconds")}, indent=2))


if __name__ == "__main__":
  app.run(main)

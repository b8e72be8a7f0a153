r"""The on-disk token cache at scale: a synthetic corpus of Python-documentation lines written to
disk, tokenized into the cache, started again, and trained on; written as JSON.

  python benchmarks/token_cache.py --sizes_mb=100,1000 --out /tmp/token_cache.json

For each corpus size it reports the tokenization throughput (MB of text per second, every
CPU as a worker; the tokenizer is trained once beforehand on a 16 MB sample and its time is
reported apart), the cache's size on disk, the second start's time (the same
`text_files` call again: a stat of the sources and a read of the cache's metadata), and the
peak resident memory of a separate process that trains a small GPT on the corpus for
`--train_steps` steps (flat in the corpus size: rows are read from disk by index).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from ssl_jax.data import token_cache, tokenizer
from ssl_jax.data.python_text import python_documents
from ssl_jax.metrics import write_json
from ssl_jax.registry import DATASETS

_OUT = flags.DEFINE_string("out", "token_cache.json", "Where to write the JSON result.")
_SIZES = flags.DEFINE_string("sizes_mb", "100,1000", "Corpus sizes in MB, comma-separated.")
_ROOT = flags.DEFINE_string("root", "/tmp/ssl_jax_token_cache_benchmark", "Corpora and caches.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 30, "Steps of the memory-measuring run.")
_SEQ = flags.DEFINE_integer("seq_len", 128, "Row length.")
_VOCAB = flags.DEFINE_integer("vocab_size", 8000, "Tokenizer vocabulary.")
_TRAIN_CHILD = flags.DEFINE_string("train_child", "", "Internal: train on this corpus and exit.")


def write_corpus(path: str, megabytes: int) -> None:
  """Lines of the embedded Python documentation, in blocks shuffled differently each time,
  until the file holds `megabytes` MB."""
  lines = [line for _, text in python_documents() for line in text.splitlines() if line.strip()]
  rng = np.random.default_rng(0)
  target = megabytes * 10**6
  with open(path, "w") as f:
    written = 0
    while written < target:
      block = "\n".join(lines[i] for i in rng.permutation(len(lines))) + "\n"
      f.write(block)
      written += len(block.encode())


def data_options(corpus: str, tokenizer_path: str) -> dict:
  return {
    "paths": corpus,
    "seq_len": _SEQ.value,
    "vocab_size": _VOCAB.value,
    "tokenizer_path": tokenizer_path,
    "test_percent": 1,
    "cache_dir": os.path.join(_ROOT.value, "cache"),
  }


def train_child(corpus: str, tokenizer_path: str) -> None:
  """A short causal-LM run on the corpus (no evaluation): what peak memory is measured on."""
  from ssl_jax import train
  from ssl_jax.config_file import load_config_file

  config = load_config_file("configs/gpt_python_text.py")
  config.data = data_options(corpus, tokenizer_path)
  config.data.name = "text_files"
  config.model_kwargs.update(dict(width=64, depth=2, num_heads=2, mlp_dim=128))
  config.evals = {}
  config.batch_size = 32
  config.total_steps = _TRAIN_STEPS.value
  config.log_every = 10
  config.checkpoint_every = _TRAIN_STEPS.value
  workdir = os.path.join(_ROOT.value, "train", os.path.basename(corpus))
  train.train_and_evaluate(config, workdir)


def peak_rss_mb_of_training(corpus: str, tokenizer_path: str) -> float:
  """Peak resident memory (MB) of a fresh process training on `corpus`."""
  command = [
    sys.executable,
    os.path.abspath(__file__),
    f"--train_child={corpus}",
    f"--root={_ROOT.value}",
    f"--train_steps={_TRAIN_STEPS.value}",
    f"--seq_len={_SEQ.value}",
    f"--vocab_size={_VOCAB.value}",
  ]
  env = {**os.environ, "TOKENIZER_PATH": tokenizer_path}
  process = subprocess.Popen(command, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
  _, status, usage = os.wait4(process.pid, 0)
  if os.waitstatus_to_exitcode(status):
    raise RuntimeError(f"The training run on {corpus} failed.")
  return usage.ru_maxrss / 1024  # kilobytes on Linux


def main(argv):
  del argv
  if _TRAIN_CHILD.value:
    train_child(_TRAIN_CHILD.value, os.environ["TOKENIZER_PATH"])
    return
  os.makedirs(_ROOT.value, exist_ok=True)
  sizes = [int(s) for s in _SIZES.value.split(",")]
  # One tokenizer for every size (trained on a 16 MB sample), so each build is tokenization.
  sample = os.path.join(_ROOT.value, "sample.txt")
  write_corpus(sample, 16)
  start = time.perf_counter()
  with open(sample) as f:
    model = tokenizer.train_tokenizer(f, os.path.join(_ROOT.value, "tok.model"), _VOCAB.value)
  tokenizer_seconds = time.perf_counter() - start
  results = []
  for megabytes in sizes:
    corpus = os.path.join(_ROOT.value, f"corpus_{megabytes}mb.txt")
    if not os.path.isfile(corpus):
      write_corpus(corpus, megabytes)
    options = data_options(corpus, model.path)
    shutil.rmtree(os.path.join(_ROOT.value, "cache"), ignore_errors=True)  # A cold first start.
    start = time.perf_counter()
    first = DATASETS.build("text_files", options, None)
    build_seconds = time.perf_counter() - start
    cache = first.info["token_cache"]
    start = time.perf_counter()
    second = DATASETS.build("text_files", options, None)
    second_seconds = time.perf_counter() - start
    assert second.info["token_cache"] == cache
    meta = token_cache.read_meta(cache)
    cache_bytes = sum(os.path.getsize(os.path.join(cache, n)) for n in os.listdir(cache))
    text_mb = os.path.getsize(corpus) / 1e6
    results.append(
      {
        "corpus_mb": text_mb,
        "tokenize_seconds": build_seconds,
        "tokenize_mb_per_second": text_mb / build_seconds,
        "train_rows": meta["rows"]["train"],
        "tokens": int(np.sum(first.info["train_token_counts"])),
        "cache_mb": cache_bytes / 1e6,
        "second_start_seconds": second_seconds,
        "train_peak_rss_mb": peak_rss_mb_of_training(corpus, model.path),
      }
    )
    print(json.dumps(results[-1]), flush=True)
    del first, second
  result = {
    "sizes": results,
    "tokenizer_training_seconds_16mb_sample": tokenizer_seconds,
    "workers": token_cache.default_workers(max(sizes) * 10**6),
    "seq_len": _SEQ.value,
    "vocab_size": _VOCAB.value,
    "benchmark_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "cpu_count": os.cpu_count(),
    "platform": platform.platform(),
  }
  write_json(_OUT.value, result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)

r"""Train-step throughput of a config on this machine's devices, written as JSON.

  python benchmarks/train_step.py --config configs/simclr_digits.py --steps 20 \
      --out /tmp/train_step.json [--config.batch_size=512 ...]

Reports compile time, seconds per step (median over timed steps after one warm-up), examples
per second (and tokens per second for text), the step's FLOPs (XLA's cost analysis of the compiled step) and the model-FLOPs
utilisation against `--peak_tflops` (per device; defaults to the bf16 dense peak of known
accelerators), and the time of the on-device augmentation alone where the task has one, so
the input side can be compared with the step it feeds.

The GPU figures in docs/performance.md come from:

  python benchmarks/train_step.py --config configs/reference/simclr_cifar10_resnet18.py \
      --synthetic --config.batch_size=512 --config.model_kwargs.dtype=bfloat16

and for the language models (sequence 512, bfloat16, cuDNN attention):

  python benchmarks/train_step.py --config configs/reference/bert_base_wikipedia.py \
      --synthetic --config.batch_size=32 --config.model_kwargs.attention_impl=cudnn
  python benchmarks/train_step.py --config configs/reference/gpt2_small_openwebtext.py \
      --synthetic --config.batch_size=16 --config.data.seq_len=512 \
      --config.model_kwargs.attention_impl=cudnn
"""

from __future__ import annotations

import json
import platform
import statistics
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from ssl_jax import parallel, train
from ssl_jax.data.synthetic import synthetic_like
from ssl_jax.metrics import write_json

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_OUT = flags.DEFINE_string("out", "train_step.json", "Where to write the JSON result.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/ssl_jax_benchmark", "For cached tokenizers.")
_STEP_TFLOPS = flags.DEFINE_float(
  "step_tflops",
  0.0,
  "TFLOPs of one step, where XLA's cost analysis reports none (GPU): "
  "run this benchmark once on CPU with the same config and pass its step_tflops here.",
)
_SYNTHETIC = flags.DEFINE_bool(
  "synthetic",
  False,
  "Replace config.data by random images of the same shape and classes, or "
  "random token rows of the same length and vocabulary (for configs written for a dataset "
  "this machine has not prepared).",
)
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak TFLOP/s per device (0: from the device).")
_PROFILE_DIR = flags.DEFINE_string(
  "profile_dir", "", "Write a jax.profiler trace of 3 steps here (open it in TensorBoard/Perfetto)."
)

# Dense bf16 peaks (TFLOP/s) by device kind, for the MFU column.
_PEAK_TFLOPS = {
  "H100": 989.0,
  "H200": 989.0,
  "A100": 312.0,
  "TPU v4": 275.0,
  "TPU v5": 459.0,
  "TPU v5 lite": 197.0,
  "TPU v6 lite": 918.0,
}


def model_flops(lowered) -> float:
  """FLOPs of one step from XLA's cost analysis of the lowered (not yet optimised) program.

  The compiled program's analysis undercounts on GPU, where matmuls become cuBLAS/cuDNN custom
  calls that it does not count; the lowered program still has every dot and convolution.
  """
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)) if cost else 0.0


def peak_tflops(device: jax.Device) -> float | None:
  kind = device.device_kind
  matches = [name for name in _PEAK_TFLOPS if name in kind]
  return _PEAK_TFLOPS[max(matches, key=len)] if matches else None


def _seconds(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def main(argv):
  del argv
  config = _CONFIG.value
  if _SYNTHETIC.value:
    with config.unlocked():
      config.data = synthetic_like(config.data, num_examples=2 * config.batch_size)
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, _WORKDIR.value, mesh)
    batch = parallel.global_batch(next(run.batches), run.data_sharding)
    state = run.state
    step_flops = _STEP_TFLOPS.value * 1e12 or model_flops(run.train_step.lower(state, batch))
    start = time.perf_counter()
    state, metrics = run.train_step(state, batch)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    times = []
    for _ in range(_STEPS.value):
      start = time.perf_counter()
      state, metrics = run.train_step(state, batch)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
    if _PROFILE_DIR.value:
      with jax.profiler.trace(_PROFILE_DIR.value):
        for _ in range(3):
          state, metrics = run.train_step(state, batch)
        jax.block_until_ready(metrics)
    result = {
      "config": config.task,
      "model": config.model,
      "batch_size": config.batch_size,
      "devices": [str(d) for d in jax.devices()],
      "platform": platform.platform(),
      "jax_version": jax.__version__,
      "compile_seconds": round(compile_seconds, 3),
      "step_seconds_median": statistics.median(times),
      "examples_per_second": config.batch_size / statistics.median(times),
      "dtype": config.model_kwargs.get("dtype", "float32"),
      "step_tflops": step_flops / 1e12,
    }
    stats = jax.devices()[0].memory_stats() or {}  # None on CPU
    if "peak_bytes_in_use" in stats:
      result["peak_memory_gib"] = stats["peak_bytes_in_use"] / 2**30
    if "tokens" in batch:
      result["seq_len"] = int(batch["tokens"].shape[1])
      result["tokens_per_second"] = result["examples_per_second"] * result["seq_len"]
    peak = _PEAK.value or peak_tflops(jax.devices()[0])
    if peak and step_flops:
      achieved = step_flops / statistics.median(times) / 1e12
      result["achieved_tflops_per_second"] = achieved
      # The compiled SPMD program is per device, so its FLOPs compare with one device's peak.
      result["mfu"] = achieved / peak
    if hasattr(run.task, "two_views"):
      views = jax.jit(run.task.two_views)
      key = jax.random.key(0)
      _seconds(views, key, batch["image"])
      augment = statistics.median(_seconds(views, key, batch["image"]) for _ in range(10))
      result["augment_seconds_median"] = augment
      result["augment_share_of_step"] = augment / result["step_seconds_median"]
  write_json(_OUT.value, result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)

#!/usr/bin/env bash
# The GPU table of docs/performance.md: every reference workload on one GPU, JSON (and a profiler trace) each
# into ${OUT:-/tmp/gpu_reference}. MFU counts XLA's cost-analysis FLOPs of the compiled step
# (forward + backward + optimizer, attention included); where XLA reports none on GPU, the
# FLOPs come from the same config's CPU cost analysis (--step_tflops).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_reference}
mkdir -p "$OUT"
run() {
  name=$1; shift
  python benchmarks/train_step.py --synthetic --steps 20 --out "$OUT/$name.json" \
    --profile_dir "$OUT/profile_$name" "$@"
}
run simclr_resnet18 --config configs/reference/simclr_cifar10_resnet18.py \
  --config.batch_size=512 --config.model_kwargs.dtype=bfloat16
run mae_vitb16 --config configs/reference/mae_imagenet_vitb16.py \
  --config.batch_size=256 --config.model_kwargs.dtype=bfloat16
run bert_base_128 --config configs/reference/bert_base_wikipedia.py \
  --config.batch_size=256 --config.data.seq_len=128 --config.model_kwargs.attention_impl=cudnn
run bert_base_512 --config configs/reference/bert_base_wikipedia.py \
  --config.batch_size=32 --config.data.seq_len=512 --config.model_kwargs.attention_impl=cudnn
run gpt2_small_1024 --config configs/reference/gpt2_small_openwebtext.py \
  --config.batch_size=16 --config.data.seq_len=1024 --config.model_kwargs.attention_impl=cudnn

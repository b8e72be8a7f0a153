r"""One SimCLR ResNet-18 train step (CIFAR shape, 32x32), ssl_jax against the same step in
PyTorch, same shapes, same CPU, one run; writes both times and their ratio as JSON.

  python benchmarks/simclr_vs_pytorch.py --out /tmp/simclr_vs_pytorch.json

ssl_jax runs its real `simclr` train step from `configs/reference/simclr_cifar10_resnet18.py`
(on-device augmentation of both views, ResNet-18 with the CIFAR stem, the 2048-256 projector,
NT-Xent at temperature 0.2, LARS, state donated) on random images. PyTorch runs the same
network written with torch.nn (BasicBlock v1.5 with zero-initialised last BN scale, the same
projector and loss) on two views given to it ready-made, and SGD with momentum (LARS adds only
elementwise work). The timed steps alternate between the two so that load from elsewhere
falls on both.

Because PyTorch is handed its views, the JSON also gives ssl_jax's step minus its measured
augmentation time. A single 3x3 convolution (64 channels, 32x32, forward and backward) is
timed in both frameworks as well: it is what bounds the step (XLA:CPU lowers convolutions to
Eigen; PyTorch to oneDNN).
"""

from __future__ import annotations

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
from ssl_jax.config_file import load_config_file
from ssl_jax.data.synthetic import synthetic_like
from ssl_jax.metrics import write_json

_OUT = flags.DEFINE_string("out", "simclr_vs_pytorch.json", "Where to write the JSON result.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per framework (after 2 warm-up).")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Images per step (two views each).")
_WIDTH = flags.DEFINE_integer("width", 64, "ResNet-18 width (64: the standard network).")
_CONFIG = "configs/reference/simclr_cifar10_resnet18.py"


def ssl_jax_steps():
  """ssl_jax's jitted simclr step on one fixed batch; its augmentation alone; the config."""
  config = load_config_file(_CONFIG)
  config.batch_size = _BATCH.value
  config.model_kwargs.width = _WIDTH.value
  config.data = synthetic_like(config.data, num_examples=2 * config.batch_size)
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, "/tmp/ssl_jax_simclr_benchmark", mesh)
    batch = parallel.global_batch(next(run.batches), run.data_sharding)
  holder = {"state": run.state}
  views = jax.jit(run.task.two_views)

  def step():
    with jax.set_mesh(mesh):
      holder["state"], metrics = run.train_step(holder["state"], batch)
      jax.block_until_ready(metrics)

  def augment():
    with jax.set_mesh(mesh):
      jax.block_until_ready(views(jax.random.key(0), batch["image"]))

  return step, augment, config


def pytorch_step(batch_size: int, width: int, config) -> callable:
  import torch
  from torch import nn

  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout, momentum=0.1)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout, momentum=0.1)
      nn.init.zeros_(self.bn2.weight)
      self.shortcut = nn.Identity()
      if stride != 1 or cin != cout:
        self.shortcut = nn.Sequential(
          nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

  layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
  cin = width
  for stage in range(4):
    for index in range(2):
      cout = width * 2**stage
      layers.append(Block(cin, cout, 2 if stage > 0 and index == 0 else 1))
      cin = cout
  hidden, out = config.task_kwargs.projector_hidden_dim, config.task_kwargs.projector_dim
  model = nn.Sequential(
    *layers,
    nn.AdaptiveAvgPool2d(1),
    nn.Flatten(),
    nn.Linear(cin, hidden),
    nn.BatchNorm1d(hidden),
    nn.ReLU(),
    nn.Linear(hidden, out),
  ).train()
  model = model.to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-5)
  temperature = config.task_kwargs.temperature
  rng = np.random.default_rng(0)
  views = torch.from_numpy(rng.random((2 * batch_size, 3, 32, 32), np.float32))
  views = views.contiguous(memory_format=torch.channels_last)
  targets = torch.arange(2 * batch_size).roll(batch_size)

  def step():
    z = nn.functional.normalize(model(views), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * batch_size, dtype=torch.bool), float("-inf"))
    loss = nn.functional.cross_entropy(logits, targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  return step


def conv_steps(batch_size: int, channels: int = 64, size: int = 32):
  """One 3x3 convolution's forward and backward (input and weight gradients) in each."""
  import torch

  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch_size, size, size, channels), np.float32)
  w = rng.standard_normal((3, 3, channels, channels), np.float32) * 0.05

  def conv_loss(x, w):
    y = jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jnp.sum(y * y)

  grad = jax.jit(jax.grad(conv_loss, argnums=(0, 1)))
  jx, jw = jnp.asarray(x), jnp.asarray(w)
  tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
  tx.requires_grad_(True)
  tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous().requires_grad_(True)

  def jax_conv():
    jax.block_until_ready(grad(jx, jw))

  def torch_conv():
    y = torch.nn.functional.conv2d(tx, tw, padding=1)
    (y * y).sum().backward()
    tx.grad = tw.grad = None

  return jax_conv, torch_conv


def main(argv):
  del argv
  import torch

  jax_step, jax_augment, config = ssl_jax_steps()
  times = time_interleaved(
    {
      "ssl_jax": jax_step,
      "ssl_jax_augmentation": jax_augment,
      "pytorch": pytorch_step(_BATCH.value, _WIDTH.value, config),
    },
    _STEPS.value,
  )
  jax_conv, torch_conv = conv_steps(2 * _BATCH.value)
  conv_times = time_interleaved({"ssl_jax": jax_conv, "pytorch": torch_conv}, 3 * _STEPS.value)
  median = {name: statistics.median(values) for name, values in times.items()}
  conv = {name: statistics.median(values) for name, values in conv_times.items()}
  model_only = median["ssl_jax"] - median["ssl_jax_augmentation"]
  result = {
    "shape": {
      "model": "resnet18 (cifar stem)",
      "width": _WIDTH.value,
      "image_size": 32,
      "batch_size": _BATCH.value,
      "views": 2,
      "projector": [config.task_kwargs.projector_hidden_dim, config.task_kwargs.projector_dim],
    },
    "ssl_jax_step_seconds_median": median["ssl_jax"],
    "ssl_jax_augmentation_seconds_median": median["ssl_jax_augmentation"],
    "ssl_jax_step_without_augmentation_seconds": model_only,
    "pytorch_step_seconds_median": median["pytorch"],
    "pytorch_over_ssl_jax": median["pytorch"] / median["ssl_jax"],  # > 1: ssl_jax is faster
    "pytorch_over_ssl_jax_without_augmentation": median["pytorch"] / model_only,
    "conv3x3_64ch_fwd_bwd_seconds": conv,
    "conv_pytorch_over_ssl_jax": conv["pytorch"] / conv["ssl_jax"],
    "step_seconds": times,
    "cpu_count": os.cpu_count(),
    "platform": platform.platform(),
    "jax_version": jax.__version__,
    "torch_version": torch.__version__,
  }
  write_json(_OUT.value, result)
  print(json.dumps({k: v for k, v in result.items() if k != "step_seconds"}, indent=2))


if __name__ == "__main__":
  app.run(main)

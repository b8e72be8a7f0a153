"""timm-format ResNet and ViT weights in and out. timm itself cannot be installed beside the CPU
torch here (its torchvision dependency has no CPU build for torch 2.13), so the files are made
with timm's state-dict names from random torch tensors, and the reference is timm's forward
written out with `torch.nn.functional` below (conv/BN/ReLU/max-pool ResNet v1.5; pre-norm ViT
with a class token, qkv attention and exact GELU): ssl_jax's features equal it within 1e-4,
as an image fine-tune's starting encoder, and export gives the files back bit for bit."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from safetensors.torch import save_file

import ssl_jax.train  # noqa: F401  (registers the tasks)
from ssl_jax.features import recorded_dataset
from ssl_jax.models.timm_weights import resnet_from_timm, resnet_to_timm, vit_from_timm, vit_to_timm
from ssl_jax.runs.finished import load_finished_run

torch.manual_seed(0)


def _bn(sd, prefix, channels):
  sd[prefix + ".weight"] = 1 + 0.1 * torch.randn(channels)
  sd[prefix + ".bias"] = 0.1 * torch.randn(channels)
  sd[prefix + ".running_mean"] = 0.1 * torch.randn(channels)
  sd[prefix + ".running_var"] = 0.5 + torch.rand(channels)
  sd[prefix + ".num_batches_tracked"] = torch.tensor(0)


def resnet_state(width=8, stages=(2, 1), bottleneck=False):
  """A timm ResNet state dict (random weights) of the given layout."""
  sd = {"conv1.weight": 0.2 * torch.randn(width, 3, 7, 7)}
  _bn(sd, "bn1", width)
  channels, expansion = width, 4 if bottleneck else 1
  for s, count in enumerate(stages, 1):
    planes = width * 2 ** (s - 1)
    for i in range(count):
      p, stride = f"layer{s}.{i}.", 2 if s > 1 and i == 0 else 1
      convs = (
        [(planes, channels, 1), (planes, planes, 3), (planes * 4, planes, 1)]
        if bottleneck
        else [(planes, channels, 3), (planes, planes, 3)]
      )
      for j, (out, inp, k) in enumerate(convs, 1):
        sd[p + f"conv{j}.weight"] = 0.2 * torch.randn(out, inp, k, k)
        _bn(sd, p + f"bn{j}", out)
      if stride != 1 or channels != planes * expansion:
        sd[p + "downsample.0.weight"] = 0.2 * torch.randn(planes * expansion, channels, 1, 1)
        _bn(sd, p + "downsample.1", planes * expansion)
      channels = planes * expansion
  sd["fc.weight"], sd["fc.bias"] = torch.randn(10, channels), torch.randn(10)
  return sd


def resnet_reference(sd, x, stages, bottleneck):
  """timm's ResNet forward (eval mode) to the pooled features."""
  bn = lambda h, p: F.batch_norm(
    h,
    sd[p + ".running_mean"],
    sd[p + ".running_var"],
    sd[p + ".weight"],
    sd[p + ".bias"],
    False,
    0.0,
    1e-5,
  )
  h = F.max_pool2d(F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
  for s, count in enumerate(stages, 1):
    for i in range(count):
      p, stride = f"layer{s}.{i}.", 2 if s > 1 and i == 0 else 1
      if bottleneck:
        o = F.relu(bn(F.conv2d(h, sd[p + "conv1.weight"]), p + "bn1"))
        o = F.relu(bn(F.conv2d(o, sd[p + "conv2.weight"], stride=stride, padding=1), p + "bn2"))
        o = bn(F.conv2d(o, sd[p + "conv3.weight"]), p + "bn3")
      else:
        o = F.relu(bn(F.conv2d(h, sd[p + "conv1.weight"], stride=stride, padding=1), p + "bn1"))
        o = bn(F.conv2d(o, sd[p + "conv2.weight"], padding=1), p + "bn2")
      shortcut = h
      if p + "downsample.0.weight" in sd:
        shortcut = bn(F.conv2d(h, sd[p + "downsample.0.weight"], stride=stride), p + "downsample.1")
      h = F.relu(o + shortcut)
  return h.mean((2, 3))


def vit_state(width=128, depth=2, patch=4, image=16, mlp=256):
  grid = image // patch
  sd = {
    "cls_token": 0.2 * torch.randn(1, 1, width),
    "pos_embed": 0.2 * torch.randn(1, 1 + grid * grid, width),
    "patch_embed.proj.weight": 0.2 * torch.randn(width, 3, patch, patch),
    "patch_embed.proj.bias": 0.1 * torch.randn(width),
    "norm.weight": 1 + 0.1 * torch.randn(width),
    "norm.bias": 0.1 * torch.randn(width),
    "head.weight": torch.randn(10, width),
    "head.bias": torch.randn(10),
  }
  for i in range(depth):
    p = f"blocks.{i}."
    for name, shape in (
      ("attn.qkv", (3 * width, width)),
      ("attn.proj", (width, width)),
      ("mlp.fc1", (mlp, width)),
      ("mlp.fc2", (width, mlp)),
    ):
      sd[p + name + ".weight"] = torch.randn(*shape) / shape[1] ** 0.5
      sd[p + name + ".bias"] = 0.1 * torch.randn(shape[0])
    for name in ("norm1", "norm2"):
      sd[p + name + ".weight"] = 1 + 0.1 * torch.randn(width)
      sd[p + name + ".bias"] = 0.1 * torch.randn(width)
  return sd


def vit_reference(sd, x, heads):
  """timm's VisionTransformer forward (class-token pooling) to the features."""
  width = sd["cls_token"].shape[-1]
  patch = sd["patch_embed.proj.weight"].shape[-1]
  h = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
  h = h.flatten(2).transpose(1, 2)
  h = torch.cat([sd["cls_token"].expand(len(x), -1, -1), h], 1) + sd["pos_embed"]
  depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
  for i in range(depth):
    p = f"blocks.{i}."
    y = F.layer_norm(h, (width,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
    q, k, v = (
      F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
      .reshape(len(x), -1, 3, heads, width // heads)
      .permute(2, 0, 3, 1, 4)
    )
    a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(len(x), -1, width)
    h = h + F.linear(a, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
    y = F.layer_norm(h, (width,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
    y = F.linear(
      F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
      sd[p + "mlp.fc2.weight"],
      sd[p + "mlp.fc2.bias"],
    )
    h = h + y
  return F.layer_norm(h, (width,), sd["norm.weight"], sd["norm.bias"], 1e-6)[:, 0]


def _numpy(sd):
  return {k: v.numpy() for k, v in sd.items()}


@pytest.mark.parametrize("bottleneck", [False, True])
def test_resnet_features_equal_timms_forward_and_export_gives_the_file_back(bottleneck):
  stages = (1, 1) if bottleneck else (2, 1)
  sd = resnet_state(stages=stages, bottleneck=bottleneck)
  x = torch.rand(2, 3, 32, 30)  # odd sizes: the padding convention shows
  with torch.no_grad():
    expected = resnet_reference(sd, x, stages, bottleneck).numpy()
  model, params, stats = resnet_from_timm(_numpy(sd))
  assert (model.stage_sizes, model.block) == (stages, "bottleneck" if bottleneck else "basic")
  ours = model.apply(
    {"params": params, "batch_stats": stats},
    jnp.asarray(x.permute(0, 2, 3, 1).numpy()),
    train=False,
  )
  np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4)
  back = resnet_to_timm(model, params, stats)
  backbone = {k: v for k, v in _numpy(sd).items() if not k.startswith("fc.")}
  assert back.keys() == backbone.keys()
  assert all(np.array_equal(back[k], backbone[k]) for k in backbone)


def test_vit_features_equal_timms_forward_and_export_gives_the_file_back():
  sd = vit_state()
  x = torch.rand(2, 3, 16, 16)
  with torch.no_grad():
    expected = vit_reference(sd, x, heads=2).numpy()
  model, params = vit_from_timm(_numpy(sd))
  assert (model.num_heads, model.image_size, model.patch_size) == (2, 16, 4)
  ours = model.apply({"params": params}, jnp.asarray(x.permute(0, 2, 3, 1).numpy()), train=False)
  np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4)
  back = vit_to_timm(model, params)
  backbone = {k: v for k, v in _numpy(sd).items() if not k.startswith("head.")}
  assert back.keys() == backbone.keys()
  # The class token's position is folded in on the way in and zero on the way out: the same
  # function, and the other tensors bit for bit.
  for key in backbone:
    if key not in ("cls_token", "pos_embed"):
      np.testing.assert_array_equal(back[key], backbone[key])
  np.testing.assert_allclose(
    back["cls_token"] + back["pos_embed"][:, :1],
    backbone["cls_token"] + backbone["pos_embed"][:, :1],
    atol=1e-6,
  )


def test_a_timm_file_is_an_init_from_source(tmp_path):
  """A bare timm `.safetensors` file and a directory as timm's `save_for_hf` writes it are read
  as a SimCLR run's encoder (with batch statistics), whose features are timm's."""
  sd = resnet_state()
  file = str(tmp_path / "resnet.safetensors")
  save_file({k: v.contiguous() for k, v in sd.items()}, file)
  directory = tmp_path / "resnet_dir"
  directory.mkdir()
  save_file({k: v.contiguous() for k, v in sd.items()}, str(directory / "model.safetensors"))
  (directory / "config.json").write_text(
    json.dumps({"architecture": "resnet18", "num_classes": 10})
  )
  x = torch.rand(3, 3, 24, 24)
  with torch.no_grad():
    expected = resnet_reference(sd, x, (2, 1), False).numpy()
  for source in (file, str(directory)):
    run = load_finished_run(source, recorded_dataset(source), requires=())
    assert run.config.task == "simclr" and run.config.model_kwargs.padding == "torch"
    features = run.task.represent(
      run.variables["params"],
      run.variables["model_state"],
      {"image": jnp.asarray(x.permute(0, 2, 3, 1).numpy())},
    )
    np.testing.assert_allclose(np.asarray(features), expected, atol=1e-4)
  assert os.path.isfile(file)


@pytest.mark.e2e
def test_fine_tune_and_continued_simclr_from_a_timm_file_then_export(tmp_path):
  """An image fine-tune starts from the file's encoder and its batch statistics; SimCLR
  continues from it (config.init_from: its projector fresh); the SimCLR run exports as timm
  files whose reference forward equals the trained encoder's features."""
  from conftest import tiny_simclr_config, trained_steps

  from ssl_jax import export
  from ssl_jax.config_base import base_config, resolve_defaults
  from ssl_jax.train import train_and_evaluate

  sd = resnet_state()
  file = str(tmp_path / "resnet.safetensors")
  save_file({k: v.contiguous() for k, v in sd.items()}, file)
  data = dict(name="synthetic", image_size=32, channels=3, num_classes=4, num_train=64)
  fine_tune = base_config()
  fine_tune.task = "image_classification"
  fine_tune.task_kwargs.update(dict(init_from=file, method="full"))
  fine_tune.model = "resnet"
  fine_tune.data = data
  fine_tune.batch_size, fine_tune.eval_batch_size, fine_tune.total_steps = 16, 16, 2
  fine_tune.evals = {}
  (start, state), _, metrics = trained_steps(fine_tune, steps=1)
  np.testing.assert_array_equal(
    start["encoder"]["Conv_0"]["kernel"], sd["conv1.weight"].numpy().transpose(2, 3, 1, 0)
  )
  assert np.isfinite(metrics["loss"])

  simclr = tiny_simclr_config(**{"init_from": file, "evals": {}, "total_steps": 2})
  simclr.data = data
  simclr.augment = {}
  simclr = resolve_defaults(simclr)
  assert (simclr.model, simclr.model_kwargs.padding, simclr.model_kwargs.width) == (
    "resnet",
    "torch",
    8,
  )
  workdir = str(tmp_path / "simclr")
  train_and_evaluate(simclr, workdir)
  out = str(tmp_path / "exported")
  export.export(workdir, out)
  assert json.loads(open(os.path.join(out, "config.json")).read())["num_classes"] == 0
  exported = {
    k: torch.from_numpy(v) for k, v in load_file(os.path.join(out, "model.safetensors")).items()
  }
  run = load_finished_run(workdir, recorded_dataset(workdir), requires=())
  x = torch.rand(2, 3, 32, 32)
  ours = run.task.represent(
    run.variables["params"],
    run.variables["model_state"],
    {"image": jnp.asarray(x.permute(0, 2, 3, 1).numpy())},
  )
  with torch.no_grad():
    expected = resnet_reference(exported, x, (2, 1), False).numpy()
  np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4)

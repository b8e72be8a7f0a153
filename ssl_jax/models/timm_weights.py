"""timm's ResNet and ViT weights (the state-dict names timm and torchvision use) to and from
ssl_jax's `ResNet` and `ViT`, as numpy arrays (no torch, no timm).

  ResNet  conv1 / bn1 (the 7x7 stem), layer<s>.<i>.{conv1..3, bn1..3, downsample.0/1}
          <->  ResNet(stem="imagenet", padding="torch"): Conv_0, BatchNorm_0,
               <Basic|Bottleneck>Block_<k>/{Conv_j, BatchNorm_j}; batch statistics as
               "batch_stats"
  ViT     cls_token, pos_embed (class position first), patch_embed.proj, blocks.<i>.{norm1,
          attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm
          <->  ViT(gelu_approximate=False): the class token's position is folded into
               `cls_token` (ssl_jax adds positions to the patches only)

The structure is read from the weights: stem width, basic or bottleneck blocks and blocks per
stage; patch size, width, depth, MLP width and image size. A ViT's head count is not in its
weights: timm's ViT-Ti/S/B use 64 per head, so heads = width / 64. Classifier heads (`fc`,
`head`) are left out: ssl_jax imports and exports the backbone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ssl_jax.models.hf_weights import Array, heads_in, heads_out, linear_from
from ssl_jax.models.resnet import ResNet
from ssl_jax.models.vit import ViT

HEAD_DIM = 64  # timm's ViT-Ti/S/B


def timm_family(state_dict: Mapping[str, Any]) -> str | None:
  """ "resnet", "vit" or None, from the names of a timm state dict."""
  if "conv1.weight" in state_dict and "layer1.0.conv1.weight" in state_dict:
    return "resnet"
  if "patch_embed.proj.weight" in state_dict and "blocks.0.attn.qkv.weight" in state_dict:
    return "vit"
  return None


def _conv_in(w: Array) -> Array:
  return np.transpose(w, (2, 3, 1, 0))  # torch [out, in, kh, kw] -> flax [kh, kw, in, out]


def _conv_out(kernel: Any) -> Array:
  return np.ascontiguousarray(np.transpose(np.asarray(kernel, np.float32), (3, 2, 0, 1)))


def _block_layers(bottleneck: bool) -> list[tuple[str, str]]:
  """(timm name, flax name) of one block's convolutions and norms, in creation order."""
  convs = ["conv1", "conv2", "conv3"] if bottleneck else ["conv1", "conv2"]
  pairs = []
  for j, name in enumerate(convs):
    pairs += [(name, f"Conv_{j}"), (f"bn{j + 1}", f"BatchNorm_{j}")]
  j = len(convs)
  return pairs + [("downsample.0", f"Conv_{j}"), ("downsample.1", f"BatchNorm_{j}")]


def resnet_from_timm(
  sd: Mapping[str, Array], config: Mapping[str, Any] | None = None
) -> tuple[ResNet, dict[str, Any], dict[str, Any]]:
  """(ResNet, params, batch_stats) of a timm / torchvision ResNet state dict."""
  del config
  if sd["conv1.weight"].shape[2:] != (7, 7):
    raise ValueError("only the plain 7x7 stem (resnet18/34/50/101) is supported, not deep stems.")
  stages = []
  for s in range(1, 5):
    count = len({m.group(1) for k in sd if (m := re.match(rf"layer{s}\.(\d+)\.conv1\.weight", k))})
    if count:
      stages.append(count)
  bottleneck = "layer1.0.conv3.weight" in sd
  model = ResNet(
    stage_sizes=tuple(stages),
    width=int(sd["conv1.weight"].shape[0]),
    block="bottleneck" if bottleneck else "basic",
    stem="imagenet",
    padding="torch",
  )
  params: dict[str, Any] = {"Conv_0": {"kernel": _conv_in(sd["conv1.weight"])}}
  stats: dict[str, Any] = {}

  def put_norm(prefix: str, target: str, params_node: dict, stats_node: dict) -> None:
    params_node[target] = {"scale": sd[prefix + ".weight"], "bias": sd[prefix + ".bias"]}
    stats_node[target] = {"mean": sd[prefix + ".running_mean"], "var": sd[prefix + ".running_var"]}

  put_norm("bn1", "BatchNorm_0", params, stats)
  block_name = "BottleneckBlock" if bottleneck else "BasicBlock"
  k = 0
  for s, count in enumerate(stages, 1):
    for i in range(count):
      prefix, node, node_stats = f"layer{s}.{i}.", {}, {}
      for theirs, ours in _block_layers(bottleneck):
        if theirs.startswith(("conv", "downsample.0")) and prefix + theirs + ".weight" in sd:
          node[ours] = {"kernel": _conv_in(sd[prefix + theirs + ".weight"])}
        elif prefix + theirs + ".weight" in sd:
          put_norm(prefix + theirs, ours, node, node_stats)
      params[f"{block_name}_{k}"], stats[f"{block_name}_{k}"] = node, node_stats
      k += 1
  return model, params, stats


def resnet_to_timm(model: ResNet, params: Mapping[str, Any], stats: Mapping[str, Any]) -> dict:
  """The timm state dict (backbone, no `fc`) of a `ResNet(stem="imagenet", padding="torch")`."""
  if model.stem != "imagenet" or model.padding != "torch":
    raise ValueError(
      f"timm's ResNet has the 7x7 stem with torch padding; this one has stem={model.stem!r}, "
      f"padding={model.padding!r} (model_kwargs.stem='imagenet', padding='torch')"
    )
  sd: dict[str, Array] = {"conv1.weight": _conv_out(params["Conv_0"]["kernel"])}

  def take_norm(prefix: str, p: Mapping, s: Mapping) -> None:
    sd[prefix + ".weight"] = np.asarray(p["scale"], np.float32)
    sd[prefix + ".bias"] = np.asarray(p["bias"], np.float32)
    sd[prefix + ".running_mean"] = np.asarray(s["mean"], np.float32)
    sd[prefix + ".running_var"] = np.asarray(s["var"], np.float32)
    sd[prefix + ".num_batches_tracked"] = np.zeros((), np.int64)

  take_norm("bn1", params["BatchNorm_0"], stats["BatchNorm_0"])
  bottleneck = model.block == "bottleneck"
  block_name = "BottleneckBlock" if bottleneck else "BasicBlock"
  k = 0
  for s, count in enumerate(model.stage_sizes, 1):
    for i in range(count):
      node, node_stats, prefix = (
        params[f"{block_name}_{k}"],
        stats[f"{block_name}_{k}"],
        f"layer{s}.{i}.",
      )
      for theirs, ours in _block_layers(bottleneck):
        if ours not in node:
          continue  # no projection shortcut in this block
        if ours.startswith("Conv"):
          sd[prefix + theirs + ".weight"] = _conv_out(node[ours]["kernel"])
        else:
          take_norm(prefix + theirs, node[ours], node_stats[ours])
      k += 1
  return sd


def vit_from_timm(
  sd: Mapping[str, Array], config: Mapping[str, Any] | None = None
) -> tuple[ViT, dict[str, Any]]:
  """(ViT, params) of a timm ViT state dict (class token, learned positions, pre-norm)."""
  del config
  width, channels, patch, _ = sd["patch_embed.proj.weight"].shape
  depth = len({m.group(1) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
  positions = sd["pos_embed"][0]
  grid = math.isqrt(positions.shape[0] - 1)
  if grid * grid + 1 != positions.shape[0] or width % HEAD_DIM:
    raise ValueError(
      f"a ViT with a class token and a square grid, width a multiple of {HEAD_DIM}; this one "
      f"has {positions.shape[0]} positions and width {width}"
    )
  heads = width // HEAD_DIM
  model = ViT(
    patch_size=int(patch),
    width=int(width),
    depth=depth,
    num_heads=heads,
    mlp_dim=int(sd["blocks.0.mlp.fc1.weight"].shape[0]),
    image_size=int(grid * patch),
    pool="cls",
    gelu_approximate=False,
  )
  kernel = np.transpose(sd["patch_embed.proj.weight"], (2, 3, 1, 0)).reshape(-1, width)
  params: dict[str, Any] = {
    "patch_embed": {"kernel": kernel, "bias": sd["patch_embed.proj.bias"]},
    "position_embed": positions[1:],
    "cls_token": sd["cls_token"] + positions[None, :1],
    "final_norm": {"scale": sd["norm.weight"], "bias": sd["norm.bias"]},
  }
  for i in range(depth):
    p = f"blocks.{i}."
    qkv_w, qkv_b = sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]
    q, k, v = (heads_in(w, b, heads) for w, b in zip(np.split(qkv_w, 3), np.split(qkv_b, 3)))
    params[f"block_{i}"] = {
      "attention": {
        "query": q,
        "key": k,
        "value": v,
        "out": heads_out(sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"], heads),
      },
      "attention_norm": {"scale": sd[p + "norm1.weight"], "bias": sd[p + "norm1.bias"]},
      "mlp_in": {"kernel": sd[p + "mlp.fc1.weight"].T, "bias": sd[p + "mlp.fc1.bias"]},
      "mlp_out": {"kernel": sd[p + "mlp.fc2.weight"].T, "bias": sd[p + "mlp.fc2.bias"]},
      "mlp_norm": {"scale": sd[p + "norm2.weight"], "bias": sd[p + "norm2.bias"]},
    }
  return model, params


def vit_to_timm(model: ViT, params: Mapping[str, Any]) -> dict[str, Array]:
  """The timm state dict (backbone, no `head`) of a learned-position, class-token `ViT`."""
  if model.position_embedding != "learned" or model.pool != "cls" or model.gelu_approximate:
    raise ValueError(
      "timm's ViT has learned positions, a class token and the exact GELU; this one has "
      f"position_embedding={model.position_embedding!r}, pool={model.pool!r}, "
      f"gelu_approximate={model.gelu_approximate} (model_kwargs.gelu_approximate=False)"
    )
  get = lambda x: np.asarray(x, np.float32)
  width, patch = model.width, model.patch_size
  kernel = get(params["patch_embed"]["kernel"])
  channels = kernel.shape[0] // (patch * patch)
  positions = get(params["position_embed"])
  sd = {
    "patch_embed.proj.weight": np.ascontiguousarray(
      kernel.reshape(patch, patch, channels, width).transpose(3, 2, 0, 1)
    ),
    "patch_embed.proj.bias": get(params["patch_embed"]["bias"]),
    # The class token's position is zero; its value already holds what timm would add.
    "pos_embed": np.concatenate([np.zeros((1, width), np.float32), positions])[None],
    "cls_token": get(params["cls_token"]),
    "norm.weight": get(params["final_norm"]["scale"]),
    "norm.bias": get(params["final_norm"]["bias"]),
  }
  for i in range(model.depth):
    block, p = params[f"block_{i}"], f"blocks.{i}."
    attention = block["attention"]
    linears = [linear_from(attention[name]) for name in ("query", "key", "value")]
    sd[p + "attn.qkv.weight"] = np.concatenate([w for w, _ in linears])
    sd[p + "attn.qkv.bias"] = np.concatenate([b for _, b in linears])
    sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"] = linear_from(attention["out"])
    for ours, theirs in (("mlp_in", "mlp.fc1"), ("mlp_out", "mlp.fc2")):
      sd[p + theirs + ".weight"] = get(block[ours]["kernel"]).T
      sd[p + theirs + ".bias"] = get(block[ours]["bias"])
    for ours, theirs in (("attention_norm", "norm1"), ("mlp_norm", "norm2")):
      sd[p + theirs + ".weight"] = get(block[ours]["scale"])
      sd[p + theirs + ".bias"] = get(block[ours]["bias"])
  return {k: np.ascontiguousarray(v) for k, v in sd.items()}

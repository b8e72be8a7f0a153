"""`python -m ssl_jax.export <workdir> --out DIR`: a finished run as a Hugging Face model
directory that transformers loads (`AutoModelForMaskedLM.from_pretrained(DIR)` and friends).

  mlm                  post-norm transformer_encoder  ->  BertForMaskedLM
  bert_pretraining     post-norm transformer_encoder  ->  BertForPreTraining (MLM + NSP/SOP)
  causal_lm            pre-norm transformer_decoder   ->  GPT2LMHeadModel
  causal_lm            llama_decoder                  ->  LlamaForCausalLM (Qwen2ForCausalLM
                                                          when it has attention biases)
  token_classification a BERT encoder                 ->  BertForTokenClassification (its tag
                                                          names as id2label)
  classification       a BERT encoder, pooling=pooler ->  BertForSequenceClassification (its
                                                          class names as id2label)

A vision run (any task whose model is a ResNet or ViT) is written as timm's backbone files:
`model.safetensors` with timm's names (no classifier) and timm's `config.json`
({"architecture", "num_classes": 0, "num_features"}): `timm.create_model(name,
num_classes=0)` loads it, once its layout is timm's (a ResNet with the 7x7 stem and torch
padding, a ViT with the exact GELU).

A LoRA fine-tune is written with its adapters merged into the weights, or with --adapter as
the adapter alone in PEFT's layout, on the model directory it started from
(`ssl_jax.export_adapters`).

DIR gets `config.json`, `model.safetensors` and the run's tokenizer: a model directory's
tokenizer files as they were (a run that started from one), or ssl_jax's sentencepiece model as
`tokenizer.model` with its special tokens in `tokenizer_config.json`. What has no public layout
(a pre-norm BERT, another task) is refused with one `Error:` line and exit 2; DIR is written
whole (a temporary directory renamed) or not at all, and an existing non-empty DIR is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
from absl import logging
from safetensors.numpy import save_file

import ssl_jax.train  # noqa: F401  (registers the tasks)
from ssl_jax.errors import ConfigError, UserError
from ssl_jax.export_adapters import lora_of, merged, write_peft_adapter
from ssl_jax.features import recorded_dataset
from ssl_jax.models.hf_bert import (
  bert_pretraining_to_hf,
  bert_sequence_classifier_to_hf,
  bert_to_hf,
  bert_token_classifier_to_hf,
)
from ssl_jax.models.hf_llama import llama_to_hf
from ssl_jax.models.huggingface import gpt2_to_hf
from ssl_jax.models.resnet import ResNet
from ssl_jax.models.timm_weights import resnet_to_timm, vit_to_timm
from ssl_jax.runs.finished import load_finished_run, read_config
from ssl_jax.runs.model_dir import is_model_directory

# (task, model) -> (the Hugging Face architecture, model_type, the conversion of the task's
# params); a converter may name the architecture itself (Llama or Qwen2).
EXPORTS: dict[tuple[str, str], tuple[str, str, Callable[..., tuple[dict, dict]]]] = {
  ("mlm", "transformer_encoder"): ("BertForMaskedLM", "bert", bert_to_hf),
  ("bert_pretraining", "transformer_encoder"): (
    "BertForPreTraining",
    "bert",
    bert_pretraining_to_hf,
  ),
  ("causal_lm", "transformer_decoder"): ("GPT2LMHeadModel", "gpt2", gpt2_to_hf),
  ("causal_lm", "llama_decoder"): ("LlamaForCausalLM", "llama", llama_to_hf),
  ("classification", "transformer_encoder"): (
    "BertForSequenceClassification",
    "bert",
    bert_sequence_classifier_to_hf,
  ),
  ("token_classification", "transformer_encoder"): (
    "BertForTokenClassification",
    "bert",
    bert_token_classifier_to_hf,
  ),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclasses.dataclass
class Exported:
  """What a run becomes: config.json fields and state dict (merged when it trained LoRA
  adapters), its dataset_info, and for a LoRA run its params and LoRA config."""

  hf_config: dict[str, Any]
  state: dict[str, np.ndarray]
  info: dict[str, Any]
  architecture: str
  lora_params: dict[str, Any] | None = None
  lora_config: Any = None
  base: str = ""


def exported_weights(workdir: str) -> Exported:
  """The run in `workdir` converted (see `Exported`); what has no layout is refused."""
  config = read_config(workdir, "workdir")
  if config.model in VISION_MODELS:
    return exported_backbone(workdir, config)
  if (config.task, config.model) not in EXPORTS:
    raise ConfigError(
      f"The run in {workdir!r} trained task {config.task!r} with model {config.model!r}, which "
      f"has no Hugging Face layout here; exportable (task, model): {sorted(EXPORTS)}, and any "
      f"vision run whose model is one of {list(VISION_MODELS)} (as timm weights)."
    )
  architecture, model_type, convert = EXPORTS[(config.task, config.model)]
  base = config.task_kwargs.get("init_from", "")
  post_norm = bool(config.model_kwargs.get("post_norm", False))
  # A pretraining run's layout is in its config; a fine-tune's is its source's (checked below).
  if not base and model_type != "llama" and post_norm != (model_type == "bert"):
    raise ConfigError(
      f"The run in {workdir!r} cannot be written as {architecture}: it is "
      f"{'post' if post_norm else 'pre'}-norm (model_kwargs.post_norm={post_norm}), and "
      f"{architecture} is {'post' if model_type == 'bert' else 'pre'}-norm."
    )
  info = config.get("dataset_info", {}).to_dict()
  run = load_finished_run(workdir, recorded_dataset(workdir), requires=(), what="workdir")
  params = run.variables["params"]
  lora_config = lora_of(run.task, params)
  plain = merged(params, lora_config) if lora_config else params
  try:
    hf_config, state = convert(run.task.encoder_module(), plain)
  except ValueError as error:  # a layout the architecture cannot hold (e.g. a pre-norm BERT)
    raise ConfigError(
      f"The run in {workdir!r} cannot be written as {architecture}: {error}"
    ) from error
  for role in ("pad", "bos", "eos"):
    if info.get(f"{role}_id") is not None:
      hf_config[f"{role}_token_id"] = int(info[f"{role}_id"])
  names = info.get("tag_names") or info.get("class_names")
  if names and "num_labels" in hf_config:  # a classifier: its labels by name
    hf_config["id2label"] = dict(enumerate(names))
    hf_config["label2id"] = {name: i for i, name in enumerate(names)}
  hf_config.setdefault("architectures", [architecture])
  hf_config.setdefault("model_type", model_type)
  state = {k: np.ascontiguousarray(v, np.float32) for k, v in state.items()}
  return Exported(
    hf_config, state, info, architecture, params if lora_config else None, lora_config, base
  )


def write_tokenizer(info: dict[str, Any], directory: str) -> None:
  """The run's tokenizer files into `directory` (see the module docstring)."""
  path = info.get("tokenizer_path", "")
  if not path:  # a vision run
    return
  source = path if os.path.isdir(path) else os.path.dirname(path)
  if os.path.isfile(os.path.join(source, "tokenizer.json")) and (
    os.path.isdir(path) or path.endswith(".json")
  ):
    for name in TOKENIZER_FILES:
      if os.path.isfile(os.path.join(source, name)):
        shutil.copy(os.path.join(source, name), directory)
  elif os.path.isfile(path):
    shutil.copy(path, os.path.join(directory, "tokenizer.model"))
    roles = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
      json.dump({f"{role}_token": token for role, token in roles.items()}, f, indent=2)


VISION_MODELS = ("resnet", "resnet18", "resnet50", "vit", "vit_ti", "vit_s", "vit_b")


def timm_name(model: Any) -> str:
  """timm's name of an architecture with this structure ("resnet" / "vit" when it has none)."""
  if isinstance(model, ResNet):
    names = {((2, 2, 2, 2), "basic"): "resnet18", ((3, 4, 6, 3), "basic"): "resnet34"}
    names[((3, 4, 6, 3), "bottleneck")] = "resnet50"
    known = names.get((tuple(model.stage_sizes), model.block)) if model.width == 64 else None
    return known or "resnet"
  sizes = {(192, 12): "tiny", (384, 12): "small", (768, 12): "base"}
  size = sizes.get((model.width, model.depth))
  return f"vit_{size}_patch{model.patch_size}_{model.image_size}" if size else "vit"


def exported_backbone(workdir: str, config: Any) -> Exported:
  """A vision run's encoder as timm's state dict (backbone, no classifier) and config."""
  run = load_finished_run(workdir, recorded_dataset(workdir), requires=(), what="workdir")
  encoder = run.task.encoder_module()
  variables = run.task.encoder_variables(run.variables["params"], run.variables["model_state"])
  try:
    if isinstance(encoder, ResNet):
      state = resnet_to_timm(encoder, variables["params"], variables.get("batch_stats", {}))
      features = encoder.width * 2 ** (len(encoder.stage_sizes) - 1)
      features *= 4 if encoder.block == "bottleneck" else 1
    else:
      state = vit_to_timm(encoder, variables["params"])
      features = encoder.width
  except ValueError as error:
    raise ConfigError(
      f"The run in {workdir!r} cannot be written as a timm model: {error}"
    ) from error
  timm_config = {"architecture": timm_name(encoder), "num_classes": 0, "num_features": features}
  return Exported(timm_config, state, {}, timm_config["architecture"])


def export(workdir: str, out: str, adapter: bool = False) -> str:
  """Writes the run in `workdir` as a model directory at `out` (whole or not at all); with
  `adapter`, a LoRA fine-tune's adapter alone in PEFT's layout."""
  if (os.path.isdir(out) and os.listdir(out)) or (os.path.exists(out) and not os.path.isdir(out)):
    raise ConfigError(f"--out={out!r} exists and is not an empty directory; name a new one.")
  exported = exported_weights(workdir)
  if adapter and exported.lora_config is None:
    raise ConfigError(f"--adapter: the run in {workdir!r} trained no LoRA adapters.")
  if adapter and not is_model_directory(exported.base):
    raise ConfigError(
      f"--adapter: the run in {workdir!r} started from {exported.base!r}, not a model "
      "directory, so no base model would hold the adapter: export it merged (without "
      "--adapter), or export its pretraining run first and fine-tune from that directory."
    )
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".export_", dir=parent)
  try:
    if adapter:
      head = {
        k: v for k, v in exported.state.items() if k.startswith(("classifier.", "bert.pooler."))
      }
      write_peft_adapter(
        staging,
        exported.lora_params,
        exported.lora_config,
        exported.architecture,
        head,
        exported.base,
      )
    else:
      state = {k: np.ascontiguousarray(v) for k, v in exported.state.items()}
      save_file(state, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
      with open(os.path.join(staging, "config.json"), "w") as f:
        json.dump(exported.hf_config, f, indent=2, sort_keys=True)
    write_tokenizer(exported.info, staging)
    if os.path.isdir(out):
      os.rmdir(out)
    os.replace(staging, out)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    prog="python -m ssl_jax.export", description=__doc__.split("\n")[0]
  )
  parser.add_argument("workdir", help="a finished run's workdir")
  parser.add_argument("--out", required=True, help="the model directory to write (new or empty)")
  parser.add_argument(
    "--adapter",
    action="store_true",
    help="a LoRA fine-tune: write its adapter alone in PEFT's layout (default: merged weights)",
  )
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.ERROR)  # Orbax's notes on reading a run are not the user's
  try:
    written = export(args.workdir, args.out, args.adapter)
  except UserError as error:
    print(error.report(), file=sys.stderr, flush=True)
    sys.exit(2)
  print(f"Wrote {written}: {', '.join(sorted(os.listdir(written)))}.")


if __name__ == "__main__":
  main()

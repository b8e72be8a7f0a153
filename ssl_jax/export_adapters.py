"""LoRA fine-tunes on their way out of ssl_jax (`python -m ssl_jax.export`): merged into the
base weights (W + (alpha / r) A B, the same function), or as the adapter alone in PEFT's layout
(`adapter_model.safetensors` + `adapter_config.json`), which `peft.PeftModel.from_pretrained`
puts on the base model directory the fine-tune started from.

PEFT's names: `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r]
(ssl_jax's a [in, r] and b [r, out], transposed), with the trained head saved whole
(`modules_to_save`). Adapters on BERT's layers map one to one; GPT-2's fused query/key/value
projection has no per-projection adapter, so only the merged export serves it.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ssl_jax.adapt import lora
from ssl_jax.errors import ConfigError

PEFT_KEY = "peft"
# ssl_jax's BERT layer paths -> transformers' module names (block index kept).
_BERT_MODULES = {
  "attention/query": "attention.self.query",
  "attention/key": "attention.self.key",
  "attention/value": "attention.self.value",
  "attention/out": "attention.output.dense",
  "mlp_in": "intermediate.dense",
  "mlp_out": "output.dense",
}
_TASK_TYPES = {
  "BertForTokenClassification": "TOKEN_CLS",
  "BertForSequenceClassification": "SEQ_CLS",
}
# The modules a fine-tune trains besides its adapters, saved whole (`modules_to_save`).
_HEADS = {
  "BertForTokenClassification": ["classifier"],
  "BertForSequenceClassification": ["classifier", "pooler"],
}


def lora_of(task: Any, params: dict[str, Any]) -> lora.LoraConfig | None:
  """The LoRA config of a run whose params hold adapters (None without any); another PEFT
  method (prompts, bottleneck adapters) has no public layout and is refused."""
  if PEFT_KEY not in params:
    return None
  config = getattr(getattr(task, "peft", None), "config", None)
  if not isinstance(config, lora.LoraConfig):
    raise ConfigError(
      f"The run was fine-tuned with PEFT method {type(task.peft).__name__}, which has no "
      "Hugging Face layout; only LoRA runs export (merged, or as a PEFT adapter)."
    )
  return config


def merged(params: dict[str, Any], config: lora.LoraConfig) -> dict[str, Any]:
  """The run's params with its adapters folded into the kernels, without the adapters."""
  base = {k: v for k, v in params.items() if k != PEFT_KEY}
  adapters = {
    path: {k: np.asarray(v) for k, v in a.items()} for path, a in params[PEFT_KEY].items()
  }
  return lora.merge(base, adapters, config)


def _bert_module(path: str) -> str:
  match = re.fullmatch(r"encoder/block_(\d+)/(.+)", path)
  if not match or match.group(2) not in _BERT_MODULES:
    raise ConfigError(f"LoRA layer {path!r} has no BERT module to map to.")
  return f"bert.encoder.layer.{match.group(1)}.{_BERT_MODULES[match.group(2)]}"


def write_peft_adapter(
  directory: str,
  params: dict[str, Any],
  config: lora.LoraConfig,
  architecture: str,
  head_state: dict[str, np.ndarray],
  base: str,
) -> None:
  """adapter_model.safetensors + adapter_config.json of a BERT LoRA fine-tune in `directory`;
  `head_state`: the trained head's weights by transformers' names; `base`: the model directory
  the fine-tune started from."""
  if architecture not in _TASK_TYPES:
    raise ConfigError(
      f"A PEFT adapter is written for {sorted(_TASK_TYPES)} fine-tunes; this run is "
      f"{architecture}: export it merged (without --adapter)."
    )
  state, modules = {}, []
  for path, adapter in params[PEFT_KEY].items():
    module = _bert_module(path)
    modules.append(module)
    a, b = np.asarray(adapter["a"], np.float32), np.asarray(adapter["b"], np.float32)
    state[f"base_model.model.{module}.lora_A.weight"] = np.ascontiguousarray(a.T)
    state[f"base_model.model.{module}.lora_B.weight"] = np.ascontiguousarray(
      b.reshape(b.shape[0], -1).T
    )
  for name, value in head_state.items():
    state[f"base_model.model.{name}"] = np.ascontiguousarray(value, np.float32)
  save_file(state, os.path.join(directory, "adapter_model.safetensors"), metadata={"format": "pt"})
  adapter_config = {
    "peft_type": "LORA",
    "task_type": _TASK_TYPES[architecture],
    "base_model_name_or_path": os.path.abspath(base),
    "r": config.rank,
    "lora_alpha": config.alpha,
    "lora_dropout": config.dropout,
    "target_modules": sorted(set(modules)),
    "modules_to_save": _HEADS[architecture],
    "bias": "none",
    "fan_in_fan_out": False,
    "use_rslora": False,
    "inference_mode": True,
  }
  with open(os.path.join(directory, "adapter_config.json"), "w") as f:
    json.dump(adapter_config, f, indent=2, sort_keys=True)

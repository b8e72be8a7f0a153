"""What the Hugging Face interop tests share: a small random BERT config, weights made
non-trivial, and numpy state dicts as torch tensors."""

import numpy as np
import torch
import transformers

VOCAB = 97


def small_bert_config(**extra) -> transformers.BertConfig:
  """2 layers of width 32 (4 heads), 16 positions, exact GELU, large random init."""
  return transformers.BertConfig(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=16,
    hidden_act="gelu",
    initializer_range=0.2,
    **extra,
  )


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
  """`model` in eval mode with non-trivial LayerNorms and biases, so a swapped weight cannot
  hide behind an init value."""
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or "LayerNorm" in name:
        p.add_(0.1 * torch.randn_like(p))
  return model.eval()


def torch_state(state_dict: dict) -> dict:
  return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()}

"""Weight conversion between ssl_jax text models and Hugging Face transformers, both ways.

  BERT   `BertForMaskedLM`, `BertForPreTraining` (with its NSP head),
         `BertForTokenClassification`  <->  post-norm `TransformerEncoder` models
         (`ssl_jax.models.hf_bert`, re-exported here)
  GPT-2  `GPT2LMHeadModel`  <->  `TransformerDecoder` (pre-norm, tied output embeddings)

State dicts are plain {name: numpy array} (PyTorch tensors are accepted on the way in and
read with `.numpy()`), so this module needs neither torch nor transformers. Config dicts use
the transformers field names and can be passed to `BertConfig(**d)` / `GPT2Config(**d)`.
BERT's token-type table is kept both ways (`TransformerEncoder.num_token_types`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ssl_jax.models.hf_bert import (  # noqa: F401  (the public conversion entry point)
  bert_from_hf,
  bert_pretraining_from_hf,
  bert_pretraining_to_hf,
  bert_to_hf,
  bert_token_classifier_from_hf,
  bert_token_classifier_to_hf,
)
from ssl_jax.models.hf_weights import (
  Array,
  Params,
  as_numpy,
  check_keys,
  heads_in,
  heads_out,
  linear_from,
  norm,
)
from ssl_jax.models.transformer import TransformerDecoder

# --- GPT-2 -----------------------------------------------------------------------------------

_GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu")


def gpt2_from_hf(
  state_dict: Mapping[str, Any], hf_config: Mapping[str, Any]
) -> tuple[TransformerDecoder, Params]:
  """(decoder, params) from a `GPT2LMHeadModel` (or `GPT2Model`) state dict and its config."""
  sd = {k.removeprefix("transformer."): v for k, v in as_numpy(state_dict).items()}
  layers, heads, width = hf_config["n_layer"], hf_config["n_head"], hf_config["n_embd"]
  check_keys(
    sd,
    ["wte.weight", "wpe.weight", "ln_f.weight"]
    + [f"h.{i}.attn.c_attn.weight" for i in range(layers)],
    "GPT2LMHeadModel",
  )
  activation = hf_config.get("activation_function", "gelu_new")
  if activation not in _GPT2_ACTIVATIONS:
    raise ValueError(
      f"activation_function {activation!r} is not supported; valid: {list(_GPT2_ACTIVATIONS)}."
    )
  if hf_config.get("scale_attn_by_inverse_layer_idx") or hf_config.get("reorder_and_upcast_attn"):
    raise ValueError(
      "GPT-2 variants with scale_attn_by_inverse_layer_idx or "
      "reorder_and_upcast_attn are not supported."
    )
  decoder = TransformerDecoder(
    vocab_size=hf_config["vocab_size"],
    width=width,
    depth=layers,
    num_heads=heads,
    mlp_dim=hf_config.get("n_inner") or 4 * width,
    max_length=hf_config["n_positions"],
    dropout_rate=float(hf_config.get("resid_pdrop", 0.0)),  # ssl_jax has one dropout rate
    norm_epsilon=hf_config["layer_norm_epsilon"],
    gelu_approximate=activation != "gelu",
  )
  params: Params = {
    "embed": {"token_embed": {"embedding": sd["wte.weight"]}, "position_embed": sd["wpe.weight"]},
    "final_norm": norm(sd["ln_f.weight"], sd["ln_f.bias"]),
  }
  for i in range(layers):
    p = f"h.{i}."
    # Conv1D stores (in, out): the transpose of a torch Linear.
    qkv_w, qkv_b = sd[p + "attn.c_attn.weight"].T, sd[p + "attn.c_attn.bias"]
    q, k, v = (
      heads_in(w, b, heads) for w, b in zip(np.split(qkv_w, 3, axis=0), np.split(qkv_b, 3))
    )
    params[f"block_{i}"] = {
      "attention": {
        "query": q,
        "key": k,
        "value": v,
        "out": heads_out(sd[p + "attn.c_proj.weight"].T, sd[p + "attn.c_proj.bias"], heads),
      },
      "attention_norm": norm(sd[p + "ln_1.weight"], sd[p + "ln_1.bias"]),
      "mlp_in": {"kernel": sd[p + "mlp.c_fc.weight"], "bias": sd[p + "mlp.c_fc.bias"]},
      "mlp_out": {"kernel": sd[p + "mlp.c_proj.weight"], "bias": sd[p + "mlp.c_proj.bias"]},
      "mlp_norm": norm(sd[p + "ln_2.weight"], sd[p + "ln_2.bias"]),
    }
  return decoder, params


def gpt2_to_hf(
  decoder: TransformerDecoder, params: Params
) -> tuple[dict[str, Any], dict[str, Array]]:
  """(GPT2Config fields, `GPT2LMHeadModel` state dict) of `TransformerDecoder` params."""
  if not decoder.causal or decoder.post_norm or decoder.embedding_width != decoder.dims["width"]:
    raise ValueError(
      "Only a pre-norm causal decoder with tied embeddings of its own width has GPT-2's layout."
    )
  dims = decoder.dims
  config = dict(
    vocab_size=decoder.vocab_size,
    n_embd=dims["width"],
    n_layer=dims["depth"],
    n_head=dims["num_heads"],
    n_inner=dims["mlp_dim"],
    n_positions=decoder.max_length,
    layer_norm_epsilon=decoder.norm_epsilon,
    activation_function="gelu_new" if decoder.gelu_approximate else "gelu",
    resid_pdrop=decoder.dropout_rate,
    embd_pdrop=decoder.dropout_rate,
    attn_pdrop=decoder.dropout_rate,
    tie_word_embeddings=True,
  )
  wte = np.asarray(params["embed"]["token_embed"]["embedding"])
  sd = {
    "transformer.wte.weight": wte,
    "transformer.wpe.weight": np.asarray(params["embed"]["position_embed"]),
    "transformer.ln_f.weight": np.asarray(params["final_norm"]["scale"]),
    "transformer.ln_f.bias": np.asarray(params["final_norm"]["bias"]),
    "lm_head.weight": wte,
  }
  for i in range(dims["depth"]):
    block, p = params[f"block_{i}"], f"transformer.h.{i}."
    attention = block["attention"]
    linears = [linear_from(attention[name]) for name in ("query", "key", "value")]
    sd[p + "attn.c_attn.weight"] = np.concatenate([w for w, _ in linears], axis=0).T
    sd[p + "attn.c_attn.bias"] = np.concatenate([b for _, b in linears])
    w, b = linear_from(attention["out"])
    sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"] = w.T, b
    for ours, theirs in (("mlp_in", "mlp.c_fc"), ("mlp_out", "mlp.c_proj")):
      sd[p + theirs + ".weight"] = np.asarray(block[ours]["kernel"])
      sd[p + theirs + ".bias"] = np.asarray(block[ours]["bias"])
    for ours, theirs in (("attention_norm", "ln_1"), ("mlp_norm", "ln_2")):
      sd[p + theirs + ".weight"] = np.asarray(block[ours]["scale"])
      sd[p + theirs + ".bias"] = np.asarray(block[ours]["bias"])
  return config, sd

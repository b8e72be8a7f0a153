"""Weight conversion between ssl_jax text models and Hugging Face transformers, both ways.

  BERT   `BertForMaskedLM`  <->  `MaskedLMModel(TransformerEncoder(post_norm=True, ...))`
  GPT-2  `GPT2LMHeadModel`  <->  `TransformerDecoder` (pre-norm, tied output embeddings)

State dicts are plain {name: numpy array} (PyTorch tensors are accepted on the way in and
read with `.numpy()`), so this module needs neither torch nor transformers. Config dicts use
the transformers field names and can be passed to `BertConfig(**d)` / `GPT2Config(**d)`.

What does not carry over: BERT's token-type (segment B) embeddings — ssl_jax has no sentence
pairs, so type 0 is folded into the position table on import and types are zero on export —
and the NSP head. Exporting a pre-norm encoder as BERT is refused (BERT is post-norm).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ssl_jax.models.transformer import TransformerDecoder, TransformerEncoder

Array = np.ndarray
Params = dict[str, Any]


def _numpy(state_dict: Mapping[str, Any]) -> dict[str, Array]:
  return {
    k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float32)
    for k, v in state_dict.items()
  }


def _check_keys(state_dict: Mapping[str, Array], needed: list[str], what: str) -> None:
  missing = [k for k in needed if k not in state_dict]
  if missing:
    raise KeyError(
      f"Not a {what} state dict: missing {missing[:5]}{' and more' if len(missing) > 5 else ''}."
    )


def _heads_in(w: Array, b: Array, heads: int) -> dict[str, Array]:
  """torch Linear (out, in) -> DenseGeneral kernel [in, heads, head_dim], bias [heads, hd]."""
  width = w.shape[1]
  return {"kernel": w.T.reshape(width, heads, -1), "bias": b.reshape(heads, -1)}


def _heads_out(w: Array, b: Array, heads: int) -> dict[str, Array]:
  """torch Linear (out, in) -> DenseGeneral kernel [heads, head_dim, out], bias [out]."""
  return {"kernel": w.T.reshape(heads, -1, w.shape[0]), "bias": b}


def _dense(w: Array, b: Array) -> dict[str, Array]:
  return {"kernel": w.T, "bias": b}


def _norm(w: Array, b: Array) -> dict[str, Array]:
  return {"scale": w, "bias": b}


def _linear_from(dense: Mapping[str, Any]) -> tuple[Array, Array]:
  """Flax Dense / DenseGeneral params -> torch Linear (weight (out, in), bias)."""
  kernel, bias = np.asarray(dense["kernel"]), np.asarray(dense["bias"])
  if kernel.ndim == 3 and bias.ndim == 2:  # [in, heads, hd]
    return kernel.reshape(kernel.shape[0], -1).T, bias.reshape(-1)
  if kernel.ndim == 3:  # [heads, hd, out]
    return kernel.reshape(-1, kernel.shape[-1]).T, bias
  return kernel.T, bias


# --- BERT ------------------------------------------------------------------------------------


def bert_from_hf(
  state_dict: Mapping[str, Any], hf_config: Mapping[str, Any]
) -> tuple[TransformerEncoder, Params]:
  """(encoder, params of `MaskedLMModel(encoder)`) from a `BertForMaskedLM` state dict and
  its config (`model.config.to_dict()`)."""
  sd = _numpy(state_dict)
  layers = hf_config["num_hidden_layers"]
  heads = hf_config["num_attention_heads"]
  _check_keys(
    sd,
    ["bert.embeddings.word_embeddings.weight", "cls.predictions.bias"]
    + [f"bert.encoder.layer.{i}.output.dense.weight" for i in range(layers)],
    "BertForMaskedLM",
  )
  if hf_config.get("hidden_act", "gelu") not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
    raise ValueError(
      f"hidden_act {hf_config['hidden_act']!r} is not supported; valid: "
      "['gelu', 'gelu_new', 'gelu_pytorch_tanh']."
    )
  encoder = TransformerEncoder(
    vocab_size=hf_config["vocab_size"],
    width=hf_config["hidden_size"],
    depth=layers,
    num_heads=heads,
    mlp_dim=hf_config["intermediate_size"],
    max_length=hf_config["max_position_embeddings"],
    dropout_rate=0.0,
    post_norm=True,
    norm_epsilon=hf_config["layer_norm_eps"],
    gelu_approximate=hf_config.get("hidden_act", "gelu") != "gelu",
  )
  e = "bert.embeddings."
  params: Params = {
    "embed": {
      "token_embed": {"embedding": sd[e + "word_embeddings.weight"]},
      # Every token is type 0 in ssl_jax: its embedding is a constant added to each position.
      "position_embed": sd[e + "position_embeddings.weight"]
      + sd[e + "token_type_embeddings.weight"][0],
    },
    "final_norm": _norm(sd[e + "LayerNorm.weight"], sd[e + "LayerNorm.bias"]),
  }
  for i in range(layers):
    p = f"bert.encoder.layer.{i}."
    get = lambda name, p=p: (sd[p + name + ".weight"], sd[p + name + ".bias"])
    params[f"block_{i}"] = {
      "attention": {
        "query": _heads_in(*get("attention.self.query"), heads),
        "key": _heads_in(*get("attention.self.key"), heads),
        "value": _heads_in(*get("attention.self.value"), heads),
        "out": _heads_out(*get("attention.output.dense"), heads),
      },
      "attention_norm": _norm(*get("attention.output.LayerNorm")),
      "mlp_in": _dense(*get("intermediate.dense")),
      "mlp_out": _dense(*get("output.dense")),
      "mlp_norm": _norm(*get("output.LayerNorm")),
    }
  t = "cls.predictions.transform."
  head = {
    "dense": _dense(sd[t + "dense.weight"], sd[t + "dense.bias"]),
    "norm": _norm(sd[t + "LayerNorm.weight"], sd[t + "LayerNorm.bias"]),
    "output_bias": sd["cls.predictions.bias"],
  }
  return encoder, {"encoder": params, "head": head}


def bert_to_hf(
  encoder: TransformerEncoder, params: Params
) -> tuple[dict[str, Any], dict[str, Array]]:
  """(BertConfig fields, `BertForMaskedLM` state dict) of `MaskedLMModel(encoder)` params."""
  if not encoder.post_norm or encoder.causal or encoder.embedding_width != encoder.dims["width"]:
    raise ValueError(
      "Only a post-norm bidirectional encoder (model_kwargs.post_norm=True, no "
      "embed_width) has BERT's layout; this one is "
      f"post_norm={encoder.post_norm}, causal={encoder.causal}."
    )
  dims = encoder.dims
  enc, head = params["encoder"], params["head"]
  width = dims["width"]
  config = dict(
    vocab_size=encoder.vocab_size,
    hidden_size=width,
    num_hidden_layers=dims["depth"],
    num_attention_heads=dims["num_heads"],
    intermediate_size=dims["mlp_dim"],
    max_position_embeddings=encoder.max_length,
    layer_norm_eps=encoder.norm_epsilon,
    type_vocab_size=2,
    pad_token_id=0,
    hidden_act="gelu_new" if encoder.gelu_approximate else "gelu",
    hidden_dropout_prob=encoder.dropout_rate,
    attention_probs_dropout_prob=encoder.dropout_rate,
  )
  e = "bert.embeddings."
  word = np.asarray(enc["embed"]["token_embed"]["embedding"])
  sd = {
    e + "word_embeddings.weight": word,
    e + "position_embeddings.weight": np.asarray(enc["embed"]["position_embed"]),
    e + "token_type_embeddings.weight": np.zeros((2, width), np.float32),
    e + "LayerNorm.weight": np.asarray(enc["final_norm"]["scale"]),
    e + "LayerNorm.bias": np.asarray(enc["final_norm"]["bias"]),
  }

  def put(prefix, linear):
    sd[prefix + ".weight"], sd[prefix + ".bias"] = linear

  def put_norm(prefix, norm):
    sd[prefix + ".weight"], sd[prefix + ".bias"] = (
      np.asarray(norm["scale"]),
      np.asarray(norm["bias"]),
    )

  for i in range(dims["depth"]):
    block, p = enc[f"block_{i}"], f"bert.encoder.layer.{i}."
    for name in ("query", "key", "value"):
      put(p + f"attention.self.{name}", _linear_from(block["attention"][name]))
    put(p + "attention.output.dense", _linear_from(block["attention"]["out"]))
    put_norm(p + "attention.output.LayerNorm", block["attention_norm"])
    put(p + "intermediate.dense", _linear_from(block["mlp_in"]))
    put(p + "output.dense", _linear_from(block["mlp_out"]))
    put_norm(p + "output.LayerNorm", block["mlp_norm"])
  put("cls.predictions.transform.dense", _linear_from(head["dense"]))
  put_norm("cls.predictions.transform.LayerNorm", head["norm"])
  sd["cls.predictions.bias"] = np.asarray(head["output_bias"])
  sd["cls.predictions.decoder.weight"] = word  # tied
  sd["cls.predictions.decoder.bias"] = sd["cls.predictions.bias"]
  return config, sd


# --- GPT-2 -----------------------------------------------------------------------------------

_GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu")


def gpt2_from_hf(
  state_dict: Mapping[str, Any], hf_config: Mapping[str, Any]
) -> tuple[TransformerDecoder, Params]:
  """(decoder, params) from a `GPT2LMHeadModel` (or `GPT2Model`) state dict and its config."""
  sd = {k.removeprefix("transformer."): v for k, v in _numpy(state_dict).items()}
  layers, heads, width = hf_config["n_layer"], hf_config["n_head"], hf_config["n_embd"]
  _check_keys(
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
    dropout_rate=0.0,
    norm_epsilon=hf_config["layer_norm_epsilon"],
    gelu_approximate=activation != "gelu",
  )
  params: Params = {
    "embed": {"token_embed": {"embedding": sd["wte.weight"]}, "position_embed": sd["wpe.weight"]},
    "final_norm": _norm(sd["ln_f.weight"], sd["ln_f.bias"]),
  }
  for i in range(layers):
    p = f"h.{i}."
    # Conv1D stores (in, out): the transpose of a torch Linear.
    qkv_w, qkv_b = sd[p + "attn.c_attn.weight"].T, sd[p + "attn.c_attn.bias"]
    q, k, v = (
      _heads_in(w, b, heads) for w, b in zip(np.split(qkv_w, 3, axis=0), np.split(qkv_b, 3))
    )
    params[f"block_{i}"] = {
      "attention": {
        "query": q,
        "key": k,
        "value": v,
        "out": _heads_out(sd[p + "attn.c_proj.weight"].T, sd[p + "attn.c_proj.bias"], heads),
      },
      "attention_norm": _norm(sd[p + "ln_1.weight"], sd[p + "ln_1.bias"]),
      "mlp_in": {"kernel": sd[p + "mlp.c_fc.weight"], "bias": sd[p + "mlp.c_fc.bias"]},
      "mlp_out": {"kernel": sd[p + "mlp.c_proj.weight"], "bias": sd[p + "mlp.c_proj.bias"]},
      "mlp_norm": _norm(sd[p + "ln_2.weight"], sd[p + "ln_2.bias"]),
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
    linears = [_linear_from(attention[name]) for name in ("query", "key", "value")]
    sd[p + "attn.c_attn.weight"] = np.concatenate([w for w, _ in linears], axis=0).T
    sd[p + "attn.c_attn.bias"] = np.concatenate([b for _, b in linears])
    w, b = _linear_from(attention["out"])
    sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"] = w.T, b
    for ours, theirs in (("mlp_in", "mlp.c_fc"), ("mlp_out", "mlp.c_proj")):
      sd[p + theirs + ".weight"] = np.asarray(block[ours]["kernel"])
      sd[p + theirs + ".bias"] = np.asarray(block[ours]["bias"])
    for ours, theirs in (("attention_norm", "ln_1"), ("mlp_norm", "ln_2")):
      sd[p + theirs + ".weight"] = np.asarray(block[ours]["scale"])
      sd[p + theirs + ".bias"] = np.asarray(block[ours]["bias"])
  return config, sd

"""Llama-family weights between Hugging Face transformers and ssl_jax, both ways:
`LlamaForCausalLM` and `Qwen2ForCausalLM` <-> `LlamaDecoder` (`ssl_jax.models.llama`).

State dicts are {name: numpy array}. The rotary settings are read from the config as
transformers 4.x writes them (`rope_theta`, `rope_scaling`) and as 5.x does (`rope_parameters`).
Qwen2 is Llama with query/key/value biases; a Llama config's `attention_bias` also adds the
output projection's bias, which the decoder does not have, so that variant is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ssl_jax.models.hf_weights import Array, Params, as_numpy, check_keys
from ssl_jax.models.llama import LlamaDecoder

_BIASED = {"Qwen2ForCausalLM": True, "LlamaForCausalLM": False}


def _rope_options(hf_config: Mapping[str, Any]) -> dict[str, Any]:
  rope = dict(hf_config.get("rope_parameters") or hf_config.get("rope_scaling") or {})
  theta = rope.get("rope_theta", hf_config.get("rope_theta", 10000.0))
  kind = rope.get("rope_type", rope.get("type", "default"))
  if kind not in ("default", "linear", "llama3"):
    raise ValueError(
      f"rope_type {kind!r} is not supported; valid: ['default', 'linear', 'llama3']."
    )
  options = {"rope_theta": float(theta), "rope_scaling": "" if kind == "default" else kind}
  if kind != "default":
    options["rope_factor"] = float(rope["factor"])
  if kind == "llama3":
    options.update(
      rope_low_freq_factor=float(rope["low_freq_factor"]),
      rope_high_freq_factor=float(rope["high_freq_factor"]),
      rope_original_max_length=int(rope["original_max_position_embeddings"]),
    )
  return options


def llama_from_hf(
  state_dict: Mapping[str, Any], hf_config: Mapping[str, Any]
) -> tuple[LlamaDecoder, Params]:
  """(decoder, params) of a `LlamaForCausalLM` / `Qwen2ForCausalLM` state dict and config."""
  architecture = (hf_config.get("architectures") or ["LlamaForCausalLM"])[0]
  sd = {k.removeprefix("model."): v for k, v in as_numpy(state_dict).items()}
  layers, heads = hf_config["num_hidden_layers"], hf_config["num_attention_heads"]
  check_keys(
    sd,
    ["embed_tokens.weight", "norm.weight"]
    + [f"layers.{i}.self_attn.q_proj.weight" for i in range(layers)],
    architecture,
  )
  if hf_config.get("hidden_act", "silu") != "silu":
    raise ValueError(f"hidden_act {hf_config['hidden_act']!r} is not supported; valid: ['silu'].")
  if hf_config.get("attention_bias") and architecture == "LlamaForCausalLM":
    raise ValueError("attention_bias=True (biases on every projection) is not supported.")
  width = hf_config["hidden_size"]
  head_dim = hf_config.get("head_dim") or width // heads
  kv_heads = hf_config.get("num_key_value_heads") or heads
  tied = bool(hf_config.get("tie_word_embeddings", False)) or "lm_head.weight" not in sd
  biased = _BIASED.get(architecture, False)
  decoder = LlamaDecoder(
    vocab_size=hf_config["vocab_size"],
    width=width,
    depth=layers,
    num_heads=heads,
    num_kv_heads=kv_heads,
    head_dim=head_dim if head_dim != width // heads else 0,
    mlp_dim=hf_config["intermediate_size"],
    max_length=hf_config["max_position_embeddings"],
    norm_epsilon=hf_config.get("rms_norm_eps", 1e-6),
    tie_embeddings=tied,
    attention_bias=biased,
    dropout_rate=float(hf_config.get("attention_dropout", 0.0)),
    **_rope_options(hf_config),
  )
  params: Params = {
    "token_embed": {"embedding": sd["embed_tokens.weight"]},
    "final_norm": {"scale": sd["norm.weight"]},
  }
  if not tied:
    params["lm_head"] = {"kernel": sd["lm_head.weight"].T}
  for i in range(layers):
    p = f"layers.{i}."

    def projection(name: str, count: int, p: str = p) -> dict[str, Array]:
      w = sd[p + f"self_attn.{name}_proj.weight"]
      out = {"kernel": w.T.reshape(width, count, head_dim)}
      if biased:
        out["bias"] = sd[p + f"self_attn.{name}_proj.bias"].reshape(count, head_dim)
      return out

    params[f"block_{i}"] = {
      "attention": {
        "query": projection("q", heads),
        "key": projection("k", kv_heads),
        "value": projection("v", kv_heads),
        "out": {"kernel": sd[p + "self_attn.o_proj.weight"].T.reshape(heads, head_dim, width)},
      },
      "attention_norm": {"scale": sd[p + "input_layernorm.weight"]},
      "mlp_gate": {"kernel": sd[p + "mlp.gate_proj.weight"].T},
      "mlp_in": {"kernel": sd[p + "mlp.up_proj.weight"].T},
      "mlp_out": {"kernel": sd[p + "mlp.down_proj.weight"].T},
      "mlp_norm": {"scale": sd[p + "post_attention_layernorm.weight"]},
    }
  return decoder, params


def llama_to_hf(decoder: LlamaDecoder, params: Params) -> tuple[dict[str, Any], dict[str, Array]]:
  """(config fields with `architectures`, state dict) of `LlamaDecoder` params: Qwen2 when it
  has attention biases, else Llama."""
  architecture = "Qwen2ForCausalLM" if decoder.attention_bias else "LlamaForCausalLM"
  heads, kv_heads, head_dim = decoder.num_heads, decoder.kv_heads, decoder.head_size
  rope: dict[str, Any] = {"rope_type": decoder.rope_scaling or "default"}
  if decoder.rope_scaling:
    rope["factor"] = decoder.rope_factor
  if decoder.rope_scaling == "llama3":
    rope.update(
      low_freq_factor=decoder.rope_low_freq_factor,
      high_freq_factor=decoder.rope_high_freq_factor,
      original_max_position_embeddings=decoder.rope_original_max_length,
    )
  config = dict(
    architectures=[architecture],
    model_type="qwen2" if decoder.attention_bias else "llama",
    vocab_size=decoder.vocab_size,
    hidden_size=decoder.width,
    num_hidden_layers=decoder.depth,
    num_attention_heads=heads,
    num_key_value_heads=kv_heads,
    head_dim=head_dim,
    intermediate_size=decoder.mlp_dim,
    max_position_embeddings=decoder.max_length,
    rms_norm_eps=decoder.norm_epsilon,
    rope_theta=decoder.rope_theta,
    rope_scaling=rope if decoder.rope_scaling else None,
    tie_word_embeddings=decoder.tie_embeddings,
    hidden_act="silu",
    attention_dropout=decoder.dropout_rate,
  )
  get = lambda tree: np.asarray(tree, np.float32)
  embed = get(params["token_embed"]["embedding"])
  sd = {"model.embed_tokens.weight": embed, "model.norm.weight": get(params["final_norm"]["scale"])}
  if not decoder.tie_embeddings:  # tied: transformers' files hold the embedding table once
    sd["lm_head.weight"] = get(params["lm_head"]["kernel"]).T
  for i in range(decoder.depth):
    block, p = params[f"block_{i}"], f"model.layers.{i}."
    attention = block["attention"]
    for name, ours in (("q", "query"), ("k", "key"), ("v", "value")):
      kernel = get(attention[ours]["kernel"])
      sd[p + f"self_attn.{name}_proj.weight"] = kernel.reshape(kernel.shape[0], -1).T
      if decoder.attention_bias:
        sd[p + f"self_attn.{name}_proj.bias"] = get(attention[ours]["bias"]).reshape(-1)
    out = get(attention["out"]["kernel"])
    sd[p + "self_attn.o_proj.weight"] = out.reshape(-1, out.shape[-1]).T
    for ours, theirs in (
      ("mlp_gate", "gate_proj"),
      ("mlp_in", "up_proj"),
      ("mlp_out", "down_proj"),
    ):
      sd[p + f"mlp.{theirs}.weight"] = get(block[ours]["kernel"]).T
    sd[p + "input_layernorm.weight"] = get(block["attention_norm"]["scale"])
    sd[p + "post_attention_layernorm.weight"] = get(block["mlp_norm"]["scale"])
  return config, sd

"""BERT weights between Hugging Face transformers and ssl_jax, both ways.

  BertForMaskedLM             <->  MaskedLMModel(encoder)         {"encoder", "head"}
  BertForPreTraining          <->  BertPretrainingModel(encoder)  {"encoder", "head", "pooler",
                                                                   "pair_head"}
  BertForTokenClassification  <->  TokenTagger(encoder, labels)   {"encoder", "head"}
  (`ssl_jax.models.heads.TokenTagger`, `ssl_jax.tasks.bert_pretraining.BertPretrainingModel`)

The encoder is post-norm (`post_norm=True`) with BERT's token-type table
(`num_token_types = type_vocab_size`), so pair rows and type ids carry over exactly. An
encoder trained without token types exports a zero type table (type 0 adds nothing), the same
function as in ssl_jax. Exporting a pre-norm encoder is refused (BERT is post-norm).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ssl_jax.models.hf_weights import (
  Array,
  Params,
  as_numpy,
  check_keys,
  dense,
  heads_in,
  heads_out,
  linear_from,
  norm,
)
from ssl_jax.models.transformer import TransformerEncoder

_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh")


def _encoder_from_hf(
  sd: dict[str, Array], hf_config: Mapping[str, Any], what: str
) -> tuple[TransformerEncoder, Params]:
  layers = hf_config["num_hidden_layers"]
  heads = hf_config["num_attention_heads"]
  check_keys(
    sd,
    ["bert.embeddings.word_embeddings.weight", "bert.embeddings.token_type_embeddings.weight"]
    + [f"bert.encoder.layer.{i}.output.dense.weight" for i in range(layers)],
    what,
  )
  activation = hf_config.get("hidden_act", "gelu")
  if activation not in _ACTIVATIONS:
    raise ValueError(f"hidden_act {activation!r} is not supported; valid: {list(_ACTIVATIONS)}.")
  e = "bert.embeddings."
  types = sd[e + "token_type_embeddings.weight"]
  encoder = TransformerEncoder(
    vocab_size=hf_config["vocab_size"],
    width=hf_config["hidden_size"],
    depth=layers,
    num_heads=heads,
    mlp_dim=hf_config["intermediate_size"],
    max_length=hf_config["max_position_embeddings"],
    # ssl_jax has one dropout rate: BERT's hidden dropout (its attention dropout is the same).
    dropout_rate=float(hf_config.get("hidden_dropout_prob", 0.0)),
    post_norm=True,
    norm_epsilon=hf_config["layer_norm_eps"],
    gelu_approximate=activation != "gelu",
    num_token_types=types.shape[0],
  )
  params: Params = {
    "embed": {
      "token_embed": {"embedding": sd[e + "word_embeddings.weight"]},
      "position_embed": sd[e + "position_embeddings.weight"],
    },
    "type_embed": types,
    "final_norm": norm(sd[e + "LayerNorm.weight"], sd[e + "LayerNorm.bias"]),
  }
  for i in range(layers):
    p = f"bert.encoder.layer.{i}."
    get = lambda name, p=p: (sd[p + name + ".weight"], sd[p + name + ".bias"])
    params[f"block_{i}"] = {
      "attention": {
        "query": heads_in(*get("attention.self.query"), heads),
        "key": heads_in(*get("attention.self.key"), heads),
        "value": heads_in(*get("attention.self.value"), heads),
        "out": heads_out(*get("attention.output.dense"), heads),
      },
      "attention_norm": norm(*get("attention.output.LayerNorm")),
      "mlp_in": dense(*get("intermediate.dense")),
      "mlp_out": dense(*get("output.dense")),
      "mlp_norm": norm(*get("output.LayerNorm")),
    }
  return encoder, params


def _mlm_head_from_hf(sd: dict[str, Array]) -> Params:
  t = "cls.predictions.transform."
  return {
    "dense": dense(sd[t + "dense.weight"], sd[t + "dense.bias"]),
    "norm": norm(sd[t + "LayerNorm.weight"], sd[t + "LayerNorm.bias"]),
    "output_bias": sd["cls.predictions.bias"],
  }


def bert_from_hf(
  state_dict: Mapping[str, Any], hf_config: Mapping[str, Any]
) -> tuple[TransformerEncoder, Params]:
  """(encoder, params of `MaskedLMModel(encoder)`) from a `BertForMaskedLM` state dict and
  its config (`model.config.to_dict()`)."""
  sd = as_numpy(state_dict)
  check_keys(sd, ["cls.predictions.bias"], "BertForMaskedLM")
  encoder, params = _encoder_from_hf(sd, hf_config, "BertForMaskedLM")
  return encoder, {"encoder": params, "head": _mlm_head_from_hf(sd)}


def bert_pretraining_from_hf(
  state_dict: Mapping[str, Any], hf_config: Mapping[str, Any]
) -> tuple[TransformerEncoder, Params]:
  """(encoder, params of `BertPretrainingModel(encoder)`) from a `BertForPreTraining` state
  dict: the MLM head, the pooler and the NSP head (`cls.seq_relationship`)."""
  sd = as_numpy(state_dict)
  needed = ["cls.predictions.bias", "bert.pooler.dense.weight", "cls.seq_relationship.weight"]
  check_keys(sd, needed, "BertForPreTraining")
  encoder, params = _encoder_from_hf(sd, hf_config, "BertForPreTraining")
  return encoder, {
    "encoder": params,
    "head": _mlm_head_from_hf(sd),
    "pooler": dense(sd["bert.pooler.dense.weight"], sd["bert.pooler.dense.bias"]),
    "pair_head": dense(sd["cls.seq_relationship.weight"], sd["cls.seq_relationship.bias"]),
  }


def bert_token_classifier_from_hf(
  state_dict: Mapping[str, Any], hf_config: Mapping[str, Any]
) -> tuple[TransformerEncoder, Params]:
  """(encoder, params of `TokenTagger(encoder, num_labels)`) from a
  `BertForTokenClassification` state dict (its `classifier` is the tagger's head)."""
  sd = as_numpy(state_dict)
  check_keys(sd, ["classifier.weight"], "BertForTokenClassification")
  encoder, params = _encoder_from_hf(sd, hf_config, "BertForTokenClassification")
  return encoder, {
    "encoder": params,
    "head": dense(sd["classifier.weight"], sd["classifier.bias"]),
  }


def bert_sequence_classifier_to_hf(
  encoder: TransformerEncoder, params: Params
) -> tuple[dict[str, Any], dict[str, Array]]:
  """(BertConfig fields with `num_labels`, `BertForSequenceClassification` state dict) of a
  `TextClassifier` with pooling="pooler" ({"encoder", "pooler", "head"})."""
  if "pooler" not in params:
    raise ValueError(
      "its classifier pools without BERT's pooler (task_kwargs.pooling 'mean' or 'first'); "
      "fine-tune with task_kwargs.pooling='pooler' for BertForSequenceClassification's layout"
    )
  config, sd = _encoder_to_hf(encoder, params["encoder"])
  sd["bert.pooler.dense.weight"], sd["bert.pooler.dense.bias"] = linear_from(params["pooler"])
  sd["classifier.weight"], sd["classifier.bias"] = linear_from(params["head"])
  config["num_labels"] = int(sd["classifier.weight"].shape[0])
  return config, sd


def _check_bert_layout(encoder: TransformerEncoder) -> None:
  if not encoder.post_norm or encoder.causal or encoder.embedding_width != encoder.dims["width"]:
    raise ValueError(
      "Only a post-norm bidirectional encoder (model_kwargs.post_norm=True, no "
      "embed_width) has BERT's layout; this one is "
      f"post_norm={encoder.post_norm}, causal={encoder.causal}."
    )


def _encoder_to_hf(
  encoder: TransformerEncoder, enc: Params
) -> tuple[dict[str, Any], dict[str, Array]]:
  _check_bert_layout(encoder)
  dims = encoder.dims
  width = dims["width"]
  types = (
    np.asarray(enc["type_embed"])
    if encoder.num_token_types
    else np.zeros((2, width), np.float32)  # type 0 adds nothing: the same function
  )
  config = dict(
    vocab_size=encoder.vocab_size,
    hidden_size=width,
    num_hidden_layers=dims["depth"],
    num_attention_heads=dims["num_heads"],
    intermediate_size=dims["mlp_dim"],
    max_position_embeddings=encoder.max_length,
    layer_norm_eps=encoder.norm_epsilon,
    type_vocab_size=types.shape[0],
    pad_token_id=0,
    hidden_act="gelu_new" if encoder.gelu_approximate else "gelu",
    hidden_dropout_prob=encoder.dropout_rate,
    attention_probs_dropout_prob=encoder.dropout_rate,
  )
  e = "bert.embeddings."
  sd = {
    e + "word_embeddings.weight": np.asarray(enc["embed"]["token_embed"]["embedding"]),
    e + "position_embeddings.weight": np.asarray(enc["embed"]["position_embed"]),
    e + "token_type_embeddings.weight": types,
  }

  def put(prefix, linear):
    sd[prefix + ".weight"], sd[prefix + ".bias"] = linear

  def put_norm(prefix, layer_norm):
    put(prefix, (np.asarray(layer_norm["scale"]), np.asarray(layer_norm["bias"])))

  put_norm(e + "LayerNorm", enc["final_norm"])
  for i in range(dims["depth"]):
    block, p = enc[f"block_{i}"], f"bert.encoder.layer.{i}."
    for name in ("query", "key", "value"):
      put(p + f"attention.self.{name}", linear_from(block["attention"][name]))
    put(p + "attention.output.dense", linear_from(block["attention"]["out"]))
    put_norm(p + "attention.output.LayerNorm", block["attention_norm"])
    put(p + "intermediate.dense", linear_from(block["mlp_in"]))
    put(p + "output.dense", linear_from(block["mlp_out"]))
    put_norm(p + "output.LayerNorm", block["mlp_norm"])
  return config, sd


def _mlm_head_to_hf(head: Params, word: Array) -> dict[str, Array]:
  t = "cls.predictions.transform."
  bias = np.asarray(head["output_bias"])
  return {
    t + "dense.weight": linear_from(head["dense"])[0],
    t + "dense.bias": linear_from(head["dense"])[1],
    t + "LayerNorm.weight": np.asarray(head["norm"]["scale"]),
    t + "LayerNorm.bias": np.asarray(head["norm"]["bias"]),
    "cls.predictions.bias": bias,
    "cls.predictions.decoder.weight": word,  # tied
    "cls.predictions.decoder.bias": bias,
  }


def bert_to_hf(
  encoder: TransformerEncoder, params: Params
) -> tuple[dict[str, Any], dict[str, Array]]:
  """(BertConfig fields, `BertForMaskedLM` state dict) of `MaskedLMModel(encoder)` params."""
  _check_bert_layout(encoder)
  config, sd = _encoder_to_hf(encoder, params["encoder"])
  sd.update(_mlm_head_to_hf(params["head"], sd["bert.embeddings.word_embeddings.weight"]))
  return config, sd


def bert_pretraining_to_hf(
  encoder: TransformerEncoder, params: Params
) -> tuple[dict[str, Any], dict[str, Array]]:
  """(BertConfig fields, `BertForPreTraining` state dict) of `BertPretrainingModel` params."""
  config, sd = bert_to_hf(encoder, params)
  sd["bert.pooler.dense.weight"], sd["bert.pooler.dense.bias"] = linear_from(params["pooler"])
  sd["cls.seq_relationship.weight"], sd["cls.seq_relationship.bias"] = linear_from(
    params["pair_head"]
  )
  return config, sd


def bert_token_classifier_to_hf(
  encoder: TransformerEncoder, params: Params
) -> tuple[dict[str, Any], dict[str, Array]]:
  """(BertConfig fields with `num_labels`, `BertForTokenClassification` state dict) of
  `TokenTagger` params."""
  config, sd = _encoder_to_hf(encoder, params["encoder"])
  sd["classifier.weight"], sd["classifier.bias"] = linear_from(params["head"])
  config["num_labels"] = int(sd["classifier.weight"].shape[0])
  return config, sd

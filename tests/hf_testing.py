"""What the Hugging Face interop tests share: a small random BERT config, weights made
non-trivial, and numpy state dicts as torch tensors."""

import numpy as np
import torch
import transformers

VOCAB = 97


def small_bert_config(**extra) -> transformers.BertConfig:
  """2 layers of width 32 (4 heads), 16 positions, exact GELU, large random init."""
  options = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=16,
    hidden_act="gelu",
    initializer_range=0.2,
  )
  return transformers.BertConfig(**{**options, **extra})


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


# --- Model directories as `save_pretrained` writes them, made offline ---------------------------

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def embedded_texts(count: int = 400) -> list[str]:
  """The embedded Python documentation (ssl_jax's offline corpus), `count` documents."""
  from ssl_jax.data.python_text import python_documents

  return [text for _, text in python_documents()[:count]]


def wordpiece_tokenizer(texts, vocab_size: int = 400) -> transformers.PreTrainedTokenizerFast:
  """A lowercasing WordPiece tokenizer (BERT's layout) trained on `texts` with `tokenizers`."""
  from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
  )

  backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
  backend.normalizer = normalizers.BertNormalizer(lowercase=True)
  backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  backend.train_from_iterator(
    texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS)
  )
  cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
  backend.post_processor = processors.TemplateProcessing(
    single="[CLS] $A [SEP]",
    pair="[CLS] $A [SEP] $B:1 [SEP]:1",
    special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
  )
  backend.decoder = decoders.WordPiece()
  return transformers.BertTokenizerFast(tokenizer_object=backend)


def byte_bpe_tokenizer(texts, vocab_size: int = 400) -> transformers.PreTrainedTokenizerFast:
  """A byte-level BPE tokenizer (GPT-2's layout: one special token, <|endoftext|>)."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  backend = Tokenizer(models.BPE())
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  backend.train_from_iterator(
    texts,
    trainers.BpeTrainer(
      vocab_size=vocab_size,
      special_tokens=["<|endoftext|>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    ),
  )
  return transformers.GPT2TokenizerFast(
    tokenizer_object=backend,
    bos_token="<|endoftext|>",
    eos_token="<|endoftext|>",
    unk_token="<|endoftext|>",
  )


def bert_directory(
  path, texts, max_positions: int = 64, **extra
) -> transformers.BertForPreTraining:
  """A random `BertForPreTraining` (2 layers, width 32) with its WordPiece tokenizer in `path`."""
  tokenizer = wordpiece_tokenizer(texts)
  torch.manual_seed(0)
  config = small_bert_config(
    vocab_size=len(tokenizer), max_position_embeddings=max_positions, **extra
  )
  config.architectures = ["BertForPreTraining"]
  model = perturbed(transformers.BertForPreTraining(config))
  model.save_pretrained(path)
  tokenizer.save_pretrained(path)
  return model


def gpt2_directory(path, texts, max_positions: int = 64) -> transformers.GPT2LMHeadModel:
  """A random `GPT2LMHeadModel` (2 layers, width 32) with its byte-level BPE tokenizer."""
  tokenizer = byte_bpe_tokenizer(texts)
  torch.manual_seed(0)
  config = transformers.GPT2Config(
    vocab_size=len(tokenizer),
    n_embd=32,
    n_layer=2,
    n_head=4,
    n_positions=max_positions,
    initializer_range=0.2,
    bos_token_id=tokenizer.eos_token_id,
    eos_token_id=tokenizer.eos_token_id,
  )
  config.architectures = ["GPT2LMHeadModel"]
  model = perturbed(transformers.GPT2LMHeadModel(config))
  model.save_pretrained(path)
  tokenizer.save_pretrained(path)
  return model


def metaspace_bpe_tokenizer(texts, vocab_size: int = 400) -> transformers.PreTrainedTokenizerFast:
  """A Llama-style tokenizer: BPE with byte fallback over "▁"-marked words, <unk>/<s>/</s>."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
  backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
  backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
  backend.train_from_iterator(
    texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"])
  )
  return transformers.PreTrainedTokenizerFast(
    tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
  )


def llama_directory(path, texts, architecture: str = "LlamaForCausalLM", **extra):
  """A random `LlamaForCausalLM` (grouped-query attention, llama3 rotary scaling, untied) or
  `Qwen2ForCausalLM` (query/key/value biases, tied embeddings, byte-level BPE with
  <|endoftext|> as its pad and end), 2 layers of width 32, with its tokenizer, in `path`."""
  qwen = architecture == "Qwen2ForCausalLM"
  if qwen:
    tokenizer = byte_bpe_tokenizer(texts)
    tokenizer.pad_token = tokenizer.eos_token
    config_class, options = transformers.Qwen2Config, dict(tie_word_embeddings=True)
  else:
    tokenizer = metaspace_bpe_tokenizer(texts)
    config_class = transformers.LlamaConfig
    options = dict(
      rope_scaling={
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32,
      }
    )
  torch.manual_seed(0)
  config = config_class(
    vocab_size=len(tokenizer),
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=48,
    max_position_embeddings=128,
    initializer_range=0.2,
    bos_token_id=tokenizer.bos_token_id,
    eos_token_id=tokenizer.eos_token_id,
    **{**options, **extra},
  )
  config.architectures = [architecture]
  model = perturbed(getattr(transformers, architecture)(config))
  model.save_pretrained(path)
  tokenizer.save_pretrained(path)
  return model


if __name__ == "__main__":
  # python tests/hf_testing.py {bert,gpt2,llama,qwen2} DIR: the tests' model directory, for
  # trying the documented commands offline.
  import sys

  kind, directory = sys.argv[1], sys.argv[2]
  texts = embedded_texts()
  makers = {
    "bert": lambda: bert_directory(directory, texts),
    "gpt2": lambda: gpt2_directory(directory, texts),
    "llama": lambda: llama_directory(directory, texts),
    "qwen2": lambda: llama_directory(directory, texts, "Qwen2ForCausalLM"),
  }
  makers[kind]()
  print(f"Wrote a random {kind} model directory with its tokenizer to {directory}")

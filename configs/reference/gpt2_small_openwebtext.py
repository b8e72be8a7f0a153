r"""GPT-2 small (124M) causal language modelling on OpenWebText (JSONL files).

  python -m ssl_jax.main --config configs/reference/gpt2_small_openwebtext.py \
      --workdir $WORKDIR --config.data.paths='/data/openwebtext/*.jsonl'

GPT-2's architecture exactly (so `ssl_jax.models.huggingface.gpt2_to_hf` exports it to
`GPT2LMHeadModel`): pre-norm decoder, 12 layers, width 768, 12 heads, tanh GELU, LayerNorm
epsilon 1e-5, learned positions over a 1024-token context, tied embeddings; vocabulary 50257
(a sentencepiece BPE model trained on the corpus here, where GPT-2 used byte-level BPE). The
recipe is nanoGPT's reproduction: batch 480 x 1024 tokens (~0.5M), 600k steps, AdamW lr 6e-4,
b2 0.95, weight decay 0.1, 2000 warmup steps, cosine to 6e-5, gradient clipping 1.0, bfloat16.
Rows pack documents with document-aware attention (nanoGPT attends across them).
Published anchors: nanoGPT (Karpathy) reaches validation loss ~2.85 on OpenWebText with this
recipe (OpenAI's GPT-2 124M checkpoint: ~3.11 on the same split before fine-tuning; GPT-2
paper, zero-shot WikiText-103 perplexity 37.50).
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.task = "causal_lm"
  config.task_kwargs = ml_collections.ConfigDict()
  config.model = "transformer_decoder"
  config.model_kwargs = ml_collections.ConfigDict(
    dict(size="base", dropout_rate=0.0, norm_epsilon=1e-5, gelu_approximate=True, dtype="bfloat16")
  )
  config.data = ml_collections.ConfigDict(
    dict(
      name="text_files",
      paths="/data/openwebtext/*.jsonl",
      format="jsonl",
      text_key="text",
      seq_len=1024,
      vocab_size=50257,
      tokenizer_type="bpe",
      test_percent=1,
    )
  )
  config.optim.update(
    dict(
      name="adamw",
      learning_rate=6e-4,
      warmup_steps=2000,
      end_lr_factor=0.1,
      weight_decay=0.1,
      b1=0.9,
      b2=0.95,
      clip_norm=1.0,
    )
  )
  config.evals = ml_collections.ConfigDict(
    {
      "causal_lm": {},
      "lm_samples": {
        "num_samples": 3,
        "prompt_tokens": 16,
        "max_new_tokens": 64,
        "temperature": 0.8,
        "top_k": 40,
      },
    }
  )
  config.total_steps = 600_000
  config.batch_size = 480
  config.log_every = 100
  config.checkpoint_every = 5000
  config.eval_batch_size = 256
  return config

r"""GPT-style causal language modelling on Python's own English text (offline, CPU).

  python -m ssl_jax.main --config configs/gpt_python_text.py --workdir /tmp/gpt_python_text

Trains a sentencepiece tokenizer (cached as <workdir>/tokenizer.model), then a small pre-LN
decoder on packed rows (attention stays inside each document). Ends with held-out next-token
loss, perplexity and accuracy beside a unigram model, and prints sampled continuations of
held-out documents (temperature 0.8, top-k 40, with the key/value cache).
Expected (README): held-out perplexity far below the unigram model's.
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.task = "causal_lm"
  config.task_kwargs = ml_collections.ConfigDict()
  config.model = "transformer_decoder"
  config.model_kwargs = ml_collections.ConfigDict(dict(
      width=128, depth=2, num_heads=4, mlp_dim=256, dropout_rate=0.0))
  config.data = ml_collections.ConfigDict(dict(
      name="python_text", seq_len=64, vocab_size=2000, tokenizer_path=""))
  config.optim.name = "adamw"
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 100
  config.optim.weight_decay = 0.01
  config.optim.b2 = 0.98
  config.optim.clip_norm = 1.0
  config.evals = ml_collections.ConfigDict({
      "causal_lm": {},
      "lm_samples": {"num_samples": 3, "prompt_tokens": 12, "max_new_tokens": 40,
                     "temperature": 0.8, "top_k": 40},
  })
  config.total_steps = 1600
  config.batch_size = 64
  config.log_every = 50
  config.checkpoint_every = 400
  config.eval_batch_size = 64
  return config

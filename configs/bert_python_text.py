r"""BERT-style masked language modelling on Python's own English text (offline, CPU).

  python -m ssl_jax.main --config configs/bert_python_text.py --workdir /tmp/bert_python_text

Trains a sentencepiece tokenizer (cached as <workdir>/tokenizer.model; set
--config.data.tokenizer_path to reuse one), then a small pre-LN Transformer encoder.
Expected: held-out masked-token accuracy at least 3x the most-frequent-token baseline.
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.task = "mlm"
  config.task_kwargs = ml_collections.ConfigDict(dict(mask_rate=0.15, mask_prob=0.8,
                                                      random_prob=0.1))
  config.model = "transformer_encoder"
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
  config.evals = ml_collections.ConfigDict({"masked_lm": {}})
  config.total_steps = 1600
  config.batch_size = 64
  config.log_every = 50
  config.checkpoint_every = 400
  config.eval_batch_size = 64
  return config

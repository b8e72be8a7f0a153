r"""T5 span corruption on Python's own English text (offline, CPU).

  python -m ssl_jax.main --config configs/t5_python_text.py --workdir /tmp/t5_python_text

Rows of 70 raw tokens (documents end to end, as seqio concatenates them) are corrupted with
noise density 0.15 and mean span length 3 into 64 input and 14 target tokens (T5's length
formula; at 512 inputs it gives 568 raw tokens and 114 targets). The tokenizer reserves 100
sentinels <extra_id_0..99> after its 2000 pieces; their ids land in <workdir>/config.json under
dataset_info.special_tokens. A small pre-LN encoder-decoder with shared, tied embeddings learns
to fill the spans.
Expected (README): held-out span-token accuracy several times the unigram model's, and
perplexity far below it.
"""

import ml_collections

from ssl_jax.config_base import base_config
from ssl_jax.tasks.span_corruption import span_corruption_lengths

INPUTS_LENGTH = 64


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.task = "span_corruption"
  config.task_kwargs = ml_collections.ConfigDict(dict(noise_density=0.15,
                                                      mean_noise_span_length=3.0))
  config.model = "transformer_encoder_decoder"
  config.model_kwargs = ml_collections.ConfigDict(dict(
      width=128, depth=2, num_heads=4, mlp_dim=256, dropout_rate=0.0))
  tokens_length, _ = span_corruption_lengths(INPUTS_LENGTH)
  config.data = ml_collections.ConfigDict(dict(
      name="python_text", seq_len=tokens_length, vocab_size=2000, extra_ids=100,
      tokenizer_path=""))
  config.optim.name = "adamw"
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 100
  config.optim.weight_decay = 0.01
  config.optim.b2 = 0.98
  config.optim.clip_norm = 1.0
  config.evals = ml_collections.ConfigDict({"span_corruption": {}})
  config.total_steps = 1600
  config.batch_size = 64
  config.log_every = 50
  config.checkpoint_every = 400
  config.eval_batch_size = 64
  return config

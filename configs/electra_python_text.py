r"""ELECTRA replaced-token detection on Python's own English text (offline, CPU).

  python -m ssl_jax.main --config configs/electra_python_text.py --workdir /tmp/electra_python_text

The discriminator is the same small pre-LN encoder as bert_python_text.py (width 128, 2
blocks); the generator has a quarter of its width (32, 1 head, MLP 64) and shares its token and
position embeddings. 15% of tokens are chosen (85% shown as [MASK], 15% unchanged), the
generator's samples replace them, and the discriminator labels every token original or
replaced (a sample equal to the original is original). Loss = generator MLM + 50 x
discriminator BCE, as in the paper.
Expected (README): discriminator detection accuracy above the "all original" baseline, with
replaced-token recall well above 0, and the generator's masked accuracy above the unigram one.
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.task = "electra"
  config.task_kwargs = ml_collections.ConfigDict(dict(
      generator_fraction=0.25, discriminator_weight=50.0, mask_rate=0.15, mask_prob=0.85))
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
  config.evals = ml_collections.ConfigDict({"replaced_token_detection": {}})
  config.total_steps = 1600
  config.batch_size = 64
  config.log_every = 50
  config.checkpoint_every = 400
  config.eval_batch_size = 64
  return config

r"""BERT-base masked language modelling on English Wikipedia (tfds, array_record).

  tfds build wikipedia/20230601.en --file_format=array_record
  python -m ssl_jax.main --config configs/reference/bert_base_wikipedia.py --workdir $WORKDIR

The original BERT-base recipe: post-norm encoder (so `ssl_jax.models.huggingface.bert_to_hf`
exports it to `BertForMaskedLM` exactly), 12 layers, width 768, 12 heads, exact GELU, LayerNorm
epsilon 1e-12, dropout 0.1; vocabulary 30522 (a sentencepiece unigram model trained on the
corpus here, where BERT used WordPiece); sequence 512, batch 256, 1M steps, AdamW lr 1e-4 with
10k warmup steps, weight decay 0.01; BERT's exact-count masking (15%, 80/10/10) over packed,
document-aware rows. BERT used 128-token rows for 90% of the steps, then 512; the two phases
are two runs, the second continuing from the first (`config.init_from`, which extends the
position table; a new run, so its AdamW state and schedule start afresh):

  python -m ssl_jax.main --config configs/reference/bert_base_wikipedia.py --workdir $W128 \
    --config.data.seq_len=128 --config.total_steps=900000
  python -m ssl_jax.main --config configs/reference/bert_base_wikipedia.py --workdir $W512 \
    --config.init_from=$W128 --config.data.tokenizer_path=$W128/tokenizer.model \
    --config.total_steps=100000
Published anchors: RoBERTa (Liu et al. 2019, Table 3) reports held-out MLM perplexity 3.99 for
BERT-base at batch 256 x 1M steps (MNLI-m 84.7, SST-2 92.7 after fine-tuning); BERT (Devlin
et al. 2019) reports MNLI-m 84.6 and GLUE 79.6.
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.task = "mlm"
  config.task_kwargs = ml_collections.ConfigDict(
    dict(masking="exact", mask_rate=0.15, mask_prob=0.8, random_prob=0.1)
  )
  config.model = "transformer_encoder"
  config.model_kwargs = ml_collections.ConfigDict(
    dict(
      size="base",
      dropout_rate=0.1,
      post_norm=True,
      norm_epsilon=1e-12,
      gelu_approximate=False,
      dtype="bfloat16",
    )
  )
  config.data = ml_collections.ConfigDict(
    dict(
      name="tfds_text",
      dataset="wikipedia/20230601.en",
      text_key="text",
      seq_len=512,
      vocab_size=30522,
      test_percent=1,
    )
  )
  config.optim.update(
    dict(
      name="adamw",
      learning_rate=1e-4,
      warmup_steps=10_000,
      weight_decay=0.01,
      b2=0.999,
      eps=1e-6,
      clip_norm=1.0,
    )
  )
  config.evals = ml_collections.ConfigDict({"masked_lm": {}})
  config.total_steps = 1_000_000
  config.batch_size = 256
  config.log_every = 1000
  config.checkpoint_every = 10_000
  config.eval_batch_size = 256
  return config

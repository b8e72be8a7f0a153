r"""BERT pretraining (masked LM + next-sentence prediction) on sentence pairs of Python's own
English text (offline, CPU).

  python -m ssl_jax.main --config configs/bert_nsp_python.py --workdir /tmp/bert_nsp_python

Rows are `[CLS] A [SEP] B [SEP]` built as google-research/bert builds them (`python_pairs`,
`ssl_jax.data.sentence_pairs`); the post-norm encoder has BERT's token-type embeddings and
its pooler + NSP head. Loss = MLM + NSP. Evaluated on held-out documents: `pair_prediction`
(NSP accuracy beside chance 50% and the held-out majority class, about 62% random pairs) and
`masked_lm`. Expected (1600 steps, about 3 minutes on 2 cores): NSP accuracy about 65% beside
the 62% majority class, masked-token accuracy about 12% (unigram baseline 4.2%).
"""

import ml_collections

from ssl_jax.recipes import pair_pretraining_config


def get_config() -> ml_collections.ConfigDict:
  return pair_pretraining_config("nsp")

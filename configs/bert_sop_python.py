r"""ALBERT-style pretraining (masked LM + sentence-order prediction) on sentence pairs of
Python's own English text (offline, CPU).

  python -m ssl_jax.main --config configs/bert_sop_python.py --workdir /tmp/bert_sop_python

Every row is two consecutive spans of one held-in document, swapped with probability 0.5
(`python_pairs` with objective "sop"). Loss = MLM + SOP. Evaluated on held-out documents:
`pair_prediction` (SOP accuracy beside chance 50%; the labels are balanced) and `masked_lm`.
Expected (1600 steps, about 4 minutes on 2 cores): SOP accuracy about 70% (chance 50%,
majority class 52.6%), masked-token accuracy about 12% (unigram baseline 4.3%).
"""

import ml_collections

from ssl_jax.recipes import pair_pretraining_config


def get_config() -> ml_collections.ConfigDict:
  return pair_pretraining_config("sop")

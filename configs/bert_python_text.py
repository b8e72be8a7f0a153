r"""BERT-style masked language modelling on Python's own English text (offline, CPU).

  python -m ssl_jax.main --config configs/bert_python_text.py --workdir /tmp/bert_python_text

Trains a sentencepiece tokenizer (cached as <workdir>/tokenizer.model; set
--config.data.tokenizer_path to reuse one), then a small pre-LN Transformer encoder.
Expected: held-out masked-token accuracy at least 3x the most-frequent-token baseline.
"""

import ml_collections

from ssl_jax.recipes import python_text_config


def get_config() -> ml_collections.ConfigDict:
  return python_text_config(
    "mlm", "transformer_encoder", {"masked_lm": {}}, mask_rate=0.15, mask_prob=0.8, random_prob=0.1
  )

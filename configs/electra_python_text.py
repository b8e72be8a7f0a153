r"""ELECTRA replaced-token detection on Python's own English text (offline, CPU).

  python -m ssl_jax.main --config configs/electra_python_text.py --workdir /tmp/electra_python_text

The discriminator is the same small pre-LN encoder as bert_python_text.py (width 128, 2
blocks); the generator has a quarter of its width (32, 1 head, MLP 64) and shares its token and
position embeddings. 15% of tokens are chosen (85% shown as [MASK], 15% unchanged), the
generator's samples replace them, and the discriminator labels every token original or
replaced (a sample equal to the original is original). Loss = generator MLM + 50 x
discriminator BCE, as in the paper.
Expected (docs/language.md): the discriminator flags replaced tokens with ~50% precision where ~14% are
replaced (recall ~8%, so accuracy equals the "all original" baseline at this budget), and the
generator's masked accuracy is ~2x the unigram one.
"""

import ml_collections

from ssl_jax.recipes import python_text_config


def get_config() -> ml_collections.ConfigDict:
  return python_text_config(
    "electra",
    "transformer_encoder",
    {"replaced_token_detection": {}},
    generator_fraction=0.25,
    discriminator_weight=50.0,
    mask_rate=0.15,
    mask_prob=0.85,
  )

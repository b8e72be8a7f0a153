"""The README's claims, checked by running the shipped configs in full (slow: ~17 minutes).

python -m pytest -m slow
"""

import pytest
from conftest import load_config

from ssl_jax import train

pytestmark = pytest.mark.slow

# scikit-learn logistic regression on raw pixels, the reference protocol.
SKLEARN_RAW_PIXELS = {"acc@1/class": 0.623, "acc@5/class": 0.860}


def test_simclr_digits_beats_raw_pixels_and_random_init(tmp_path):
  results = train.train_and_evaluate(load_config("simclr_digits"), str(tmp_path))
  probe = results["evals"]["linear_probe"]
  for column, reference in SKLEARN_RAW_PIXELS.items():
    assert probe["simclr"][column]["mean"] > reference
    assert probe["simclr"][column]["mean"] > probe["raw pixels"][column]["mean"]
  for column in probe["simclr"]:
    assert probe["simclr"][column]["mean"] > probe["random init"][column]["mean"]


def test_bert_python_text_is_3x_the_unigram_baseline(tmp_path):
  results = train.train_and_evaluate(load_config("bert_python_text"), str(tmp_path))
  table = results["evals"]["masked_lm"]
  assert table["mlm"]["masked acc"] >= 3 * table["unigram (most frequent token)"]["masked acc"]


def test_gpt_python_text_perplexity_is_a_fraction_of_the_unigram(tmp_path):
  results = train.train_and_evaluate(load_config("gpt_python_text"), str(tmp_path))
  table = results["evals"]["causal_lm"]
  # README: 60.2 vs 483.3.
  assert (
    table["causal_lm"]["perplexity"] < table["unigram (train token frequencies)"]["perplexity"] / 4
  )
  assert len(results["evals"]["lm_samples"]) == 3

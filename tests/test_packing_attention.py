"""Packed rows: attention stays inside each document, so a document's outputs do not depend on
its row-mates or on where in the row it sits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models.transformer import TransformerDecoder, TransformerEncoder, segment_mask


def test_segment_mask_is_same_segment_and_not_padding():
  segments = jnp.array([[1, 1, 2, 2, 2, 0]])
  mask = np.asarray(segment_mask(segments))[0, 0]
  for i in range(6):
    for j in range(6):
      expected = (segments[0, i] == segments[0, j] != 0) or i == j
      assert mask[i, j] == expected, (i, j)
  causal = np.asarray(segment_mask(segments, causal=True))[0, 0]
  np.testing.assert_array_equal(causal, mask & np.tril(np.ones((6, 6), bool)))


def _encoder(cls=TransformerEncoder):
  model = cls(
    vocab_size=50, width=16, depth=2, num_heads=2, mlp_dim=32, max_length=12, dropout_rate=0.0
  )
  tokens = jnp.zeros((1, 12), jnp.int32)
  params = model.init(jax.random.key(0), tokens, tokens >= 0, train=False)
  return model, params


@pytest.mark.parametrize("cls", [TransformerEncoder, TransformerDecoder])
def test_a_document_ignores_its_row_mate_and_its_place_in_the_row(cls):
  model, params = _encoder(cls)
  doc_a = [2, 11, 12, 13, 3]
  run = lambda tokens, segments, positions: model.apply(
    params,
    jnp.asarray([tokens]),
    jnp.asarray([tokens]) != 0,
    train=False,
    segment_ids=jnp.asarray([segments]),
    positions=jnp.asarray([positions]),
  )[0]
  # Row: doc B (4 tokens) then doc A (5 tokens), then 3 padding tokens.
  for doc_b in ([2, 21, 22, 3], [2, 40, 41, 3]):
    packed = run(
      doc_b + doc_a + [0, 0, 0],
      [1] * 4 + [2] * 5 + [0] * 3,
      [0, 1, 2, 3] + [0, 1, 2, 3, 4] + [0, 0, 0],
    )
    alone = run(doc_a + [0] * 7, [1] * 5 + [0] * 7, [0, 1, 2, 3, 4] + [0] * 7)
    np.testing.assert_allclose(packed[4:9], alone[:5], atol=1e-5)
  # Without segment ids (one document per row) the row-mate does leak in.
  leaky = model.apply(
    params,
    jnp.asarray([[2, 21, 22, 3] + doc_a + [0, 0, 0]]),
    jnp.asarray([[2, 21, 22, 3] + doc_a + [0, 0, 0]]) != 0,
    train=False,
  )[0]
  assert not np.allclose(leaky[4:9], alone[:5], atol=1e-3)

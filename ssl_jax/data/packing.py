"""Packing tokenized documents into fixed-length rows that attention cannot leak across.

Each document becomes `[bos] tokens [eos]`, documents (in a seeded order) are laid end to end and
cut into rows of `seq_len`; a document that crosses a row boundary continues as a new segment
in the next row. Every row carries, besides its tokens:
  segment_ids: 1, 2, ... for the segments in the row, 0 for padding (only the last row pads);
  positions:   the index of each token within its segment, restarting at 0.
Models attend only within a segment (`ssl_jax.models.transformer.segment_mask`), so a
document's outputs never depend on its row-mates, and no token is wasted on padding (the
MaxText/Levanter layout).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssl_jax.errors import DataError

PAD_SEGMENT = 0  # the segment id of padding (models read it the same way)


def pack_documents(
  token_lists: Sequence[Sequence[int]],
  seq_len: int,
  order_seed: int,
  pad_id: int,
  bos_id: int | None = None,
  eos_id: int | None = None,
) -> dict[str, np.ndarray]:
  """{"tokens", "segment_ids", "positions"}: int32 [num_rows, seq_len] arrays.

  Args:
    token_lists: one list of token ids per document.
    seq_len: row length.
    order_seed: seed of the document order (a permutation), so rows mix documents.
    pad_id: token of the padding at the end of the last row.
    bos_id, eos_id: tokens put before / after every document (None: none).
  """
  if seq_len < 2:
    raise DataError(f"seq_len must be at least 2, got {seq_len}.")
  order = np.random.default_rng(order_seed).permutation(len(token_lists))
  pieces, lengths = [], []
  for index in order:
    doc = list(token_lists[index])
    doc = ([bos_id] if bos_id is not None else []) + doc + ([eos_id] if eos_id is not None else [])
    if doc:
      pieces.append(np.asarray(doc, np.int32))
      lengths.append(len(doc))
  if not pieces:
    raise DataError("No tokens to pack: every document is empty.")
  stream = np.concatenate(pieces)
  doc_index = np.repeat(np.arange(len(pieces)), lengths)  # document of every stream token
  num_rows = -(-len(stream) // seq_len)
  total = num_rows * seq_len
  tokens = np.full(total, pad_id, np.int32)
  tokens[: len(stream)] = stream
  tokens = tokens.reshape(num_rows, seq_len)
  doc_index = np.concatenate([doc_index, np.full(total - len(stream), -1)]).reshape(num_rows, -1)
  # A new segment starts where the document changes, and at every row start.
  starts_segment = np.ones_like(doc_index, bool)
  starts_segment[:, 1:] = doc_index[:, 1:] != doc_index[:, :-1]
  segment_ids = np.cumsum(starts_segment, axis=1).astype(np.int32)
  segment_ids[doc_index < 0] = PAD_SEGMENT
  # Positions restart at every segment start (a continued document restarts too).
  segment_start = np.maximum.accumulate(
    np.where(starts_segment, np.arange(seq_len)[None, :], 0), axis=1
  )
  positions = (np.arange(seq_len)[None, :] - segment_start).astype(np.int32)
  positions[doc_index < 0] = 0
  return {"tokens": tokens, "segment_ids": segment_ids, "positions": positions}

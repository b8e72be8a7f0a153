"""Windows over a tagged sentence longer than its row, so every word is predicted and scored.

Whole words only: a window holds as many words as fit its `room` (the row less [CLS] and
[SEP]); the next one starts about `overlap` pieces back, but always at a word the previous
window did not start with. Where two windows overlap, each word is owned by the window in
which it sits nearer the middle (the overlap is split in half), so every word is scored once,
with context on both sides when it has any. A word longer than the room keeps its first
`room` pieces (its first piece carries its tag).
"""

from __future__ import annotations

from collections.abc import Sequence

Window = tuple[int, int, int, int]  # (first word, end word, first owned word, end owned word)


def sentence_windows(lengths: Sequence[int], room: int, overlap: int) -> list[Window]:
  """The windows over words of `lengths` pieces (each at most `room`): see the module
  docstring. One window (0, n, 0, n) when the sentence fits."""
  count = len(lengths)
  if room < 1 or any(length > room for length in lengths):
    raise ValueError(f"every word must fit the room of {room} pieces.")
  spans: list[tuple[int, int]] = []
  start = 0
  while True:
    end, used = start, 0
    while end < count and used + lengths[end] <= room:
      used += lengths[end]
      end += 1
    spans.append((start, end))
    if end == count:
      break
    following, back = end, 0
    while following - 1 > start and back + lengths[following - 1] <= overlap:
      following -= 1
      back += lengths[following]
    start = following
  windows = []
  owned_start = 0
  for i, (start, end) in enumerate(spans):
    if i + 1 < len(spans):
      next_start = spans[i + 1][0]
      owned_end = next_start + (end - next_start + 1) // 2
    else:
      owned_end = end
    windows.append((start, end, owned_start, owned_end))
    owned_start = owned_end
  return windows

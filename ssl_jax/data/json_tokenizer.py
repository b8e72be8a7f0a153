"""A model directory's tokenizer: its `tokenizer.json` read through the `tokenizers` library,
with the special tokens the directory declares (`tokenizer_config.json`, else
`special_tokens_map.json`, as transformers' `save_pretrained` writes them; for a bare
`tokenizer.json`, its special added tokens by their usual names), never fixed ids."""

from __future__ import annotations

import json
import os

from tokenizers import Tokenizer

from ssl_jax.data.tokenizer_base import TextTokenizer, check_extra_ids
from ssl_jax.errors import DataError, MissingInputError

TOKENIZER_JSON = "tokenizer.json"
_DECLARATIONS = ("tokenizer_config.json", "special_tokens_map.json")
# A bare tokenizer.json declares no roles: its special tokens are recognised by these names.
_USUAL_NAMES = {
  "pad": ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>"),
  "unk": ("[UNK]", "<unk>"),
  "cls": ("[CLS]", "<cls>"),
  "sep": ("[SEP]", "<sep>"),
  "mask": ("[MASK]", "<mask>"),
  "bos": ("<s>", "<bos>", "<|begin_of_text|>"),
  "eos": ("</s>", "<eos>", "<|endoftext|>", "<|end_of_text|>"),
}


def tokenizer_json_path(path: str) -> str | None:
  """`path` itself when it is a tokenizer.json file, `path/tokenizer.json` for a directory that
  has one, else None."""
  if os.path.isdir(path):
    candidate = os.path.join(path, TOKENIZER_JSON)
    return candidate if os.path.isfile(candidate) else None
  return path if os.path.basename(path).endswith(".json") and os.path.isfile(path) else None


def _token_string(value: object) -> str | None:
  """A declared token: a string, or transformers' serialised AddedToken {"content": ...}."""
  if isinstance(value, dict):
    value = value.get("content")
  return value if isinstance(value, str) and value else None


def declared_tokens(directory: str) -> dict[str, str] | None:
  """{role: token string} from the first declaration file the directory has, or None when it
  has none (a bare tokenizer.json)."""
  for name in _DECLARATIONS:
    file = os.path.join(directory, name)
    if os.path.isfile(file):
      with open(file) as f:
        try:
          declared = json.load(f)
        except json.JSONDecodeError as error:
          raise DataError(f"{file} is not valid JSON ({error}).") from error
      tokens = {role: _token_string(declared.get(f"{role}_token")) for role in _USUAL_NAMES}
      return {role: token for role, token in tokens.items() if token}
  return None


class JsonTokenizer(TextTokenizer):
  """A `tokenizer.json` (a file, or a model directory holding one) through `tokenizers`.

  The roles come from the directory (module docstring); the row roles follow
  `ssl_jax.data.tokenizer_base`. T5 sentinels are `extra_ids` ids appended after its vocabulary, as for sentencepiece."""

  kind = "tokenizer.json"

  def __init__(self, path: str, extra_ids: int = 0):
    file = tokenizer_json_path(path)
    if file is None:
      raise MissingInputError(
        f"{path!r} is neither a tokenizer.json file nor a directory that holds one."
      )
    self.path = os.path.dirname(file) if os.path.isdir(path) else file
    try:
      self.backend = Tokenizer.from_file(file)
    except Exception as error:  # the library raises a bare Exception on a malformed file
      raise DataError(f"{file} cannot be read by the tokenizers library ({error}).") from error
    self.extra_ids = check_extra_ids(extra_ids)
    self._set_roles(os.path.dirname(file))
    model = json.loads(self.backend.to_str())["model"]
    prefix = model.get("continuing_subword_prefix")
    self.word_prefix, self._continuation = (None, prefix) if prefix else (self._word_prefix(), None)

  def _set_roles(self, directory: str) -> None:
    declared = declared_tokens(directory)
    if declared is None:
      specials = {t.content for t in self.backend.get_added_tokens_decoder().values() if t.special}
      declared = {}
      for role, names in _USUAL_NAMES.items():
        found = [n for n in names if n in specials]
        if found:
          declared[role] = found[0]
    ids = {}
    for role, token in declared.items():
      ids[role] = self.backend.token_to_id(token)
      if ids[role] is None:
        raise DataError(
          f"Tokenizer {self.path!r} declares {role}_token {token!r}, which is not in its "
          "vocabulary."
        )
    end = ids.get("sep", ids.get("eos"))
    if end is None:
      raise DataError(
        f"Tokenizer {self.path!r} has neither a [SEP] nor an end-of-text token (it declares "
        f"{sorted(declared)}): rows need one to end a document."
      )
    self.unk_id, self.mask_id = ids.get("unk"), ids.get("mask")
    self.sep_id, self.eos_id = end, ids.get("eos", end)
    self.cls_id = ids.get("cls", ids.get("bos", end))
    self.bos_id = ids.get("bos", self.cls_id)
    own_unk = self.unk_id if self.unk_id not in (self.cls_id, self.sep_id) else None
    self.pad_id = ids.get("pad", own_unk if own_unk is not None else self.eos_id)

  def _word_prefix(self) -> str | None:
    """The mark of a word-initial piece: byte-level BPE's "Ġ" or sentencepiece's "▁",
    whichever more pieces carry (None: every piece counts as a word)."""
    pieces = list(self.backend.get_vocab())
    counts = {mark: sum(p.startswith(mark) for p in pieces) for mark in ("\u0120", "\u2581")}
    mark = max(counts, key=counts.get)
    return mark if counts[mark] else None

  def is_word_start(self, piece: str) -> bool:
    if self._continuation is not None:
      return not piece.startswith(self._continuation)
    return self.word_prefix is None or piece.startswith(self.word_prefix)

  @property
  def text_vocab_size(self) -> int:
    return self.backend.get_vocab_size(with_added_tokens=True)

  def piece(self, token_id: int) -> str:
    return self.backend.id_to_token(token_id)

  def encode(self, texts: list[str]) -> list[list[int]]:
    encoded = self.backend.encode_batch(list(texts), add_special_tokens=False)
    return [e.ids for e in encoded]

  def decode(self, ids: list[int]) -> str:
    text = [i for i in ids if i < self.text_vocab_size and i not in self.special_ids]
    return self.backend.decode(text, skip_special_tokens=True)

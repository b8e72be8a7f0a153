"""An offline named-entity task from the embedded Python text: the spans its authors marked up
as code, with the markup removed, typed by what they name.

Source. The documents of `python_text` (the pydoc reference topics and the standard-library
docstrings), with the same document-name hash deciding train and test, so a test sentence comes
from a document no `python_text` / `python_pairs` pretraining run trained on.

Sentences. Code blocks are dropped (lines indented by three spaces or more, `>>>` / `...`
prompts, heading rules), the prose is cut by `sentence_pairs.split_sentences`, and words are
identifier-like runs (`os.path.join()` is one word) or single punctuation marks. Only sentences
with at least one entity are kept (as in CoNLL-style data, most sentences mention one), of
3 to 40 words.

Entities. In docstrings: ``double``, `single` and :role:`target` spans, and 'quoted'
identifiers; in the topics, where Sphinx rendered every inline literal as "x", double-quoted
spans. The marks are removed from the words the model reads, so it has to find the spans from
context and shape. Types:

  FUNC    a :func: / :meth: span, or a span ending in "()"; also every unmarked word ending
          in "()" (so the same word never gets two labels);
  CLASS   a :class: / :exc: span, or one whose last dotted part is a class the standard
          library or builtins define (`ValueError`, `OrderedDict`);
  MODULE  a :mod: span, or a standard-library module's import name (`json`, `os.path`);
  PARAM   a span naming an argument of the function the docstring documents;
  CODE    any other marked span: literals, keywords, expressions (`None`, 'r', "if").

Unmarked mentions of the same names stay O: the labels are what the authors marked, which is
the noise this task has. `python_tag_counts` reports the balance (see docs/internalization.md).
"""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Sequence
from pydoc_data import topics

from ssl_jax.data.python_text import read_stdlib_docstrings, stdlib_names
from ssl_jax.data.sentence_pairs import split_sentences
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import TokenizerSpec, corpus_tokenizer, is_test_document
from ssl_jax.data.token_tags import Sentence, tagged_dataset
from ssl_jax.registry import DATASETS

ENTITY_TYPES = ("FUNC", "CLASS", "MODULE", "PARAM", "CODE")
_ROLE_TYPES = {"func": "FUNC", "meth": "FUNC", "class": "CLASS", "exc": "CLASS", "mod": "MODULE"}
_DOCSTRING_SPAN = re.compile(
  r":(?:py:)?(?P<role>[a-z]+):`(?P<role_text>[^`\n]+?)`"
  r"|``(?P<literal>[^`\n]+?)``"
  r"|(?<![\w`])`(?P<single>[^`\n]+?)`(?![\w`])"
  r"|(?<![\w'])'(?P<quoted>[A-Za-z_][\w.]*(?:\(\))?)'(?![\w'])"
)
_TOPIC_SPAN = re.compile(r'(?<![\w"])"(?P<quoted>[^"\n]{1,60}?)"(?![\w"])')
_WORD = re.compile(r"\w+(?:\.\w+)*(?:\(\))?|[^\w\s`]")
_CODE_LINE = re.compile(r"^( {3,}|\t|>>>|\.\.\. |[*=~^#-]{3,}\s*$)")
MIN_WORDS, MAX_WORDS = 3, 40


def entity_type(text: str, role: str, parameters: Sequence[str]) -> str:
  """The type of a marked span (see the module docstring), `role` "" when it has none."""
  if role in _ROLE_TYPES:
    return _ROLE_TYPES[role]
  classes, modules = stdlib_names()
  if text.endswith("()"):
    return "FUNC"
  if re.fullmatch(r"[A-Za-z_][\w.]*", text):
    if text.rsplit(".", 1)[-1] in classes:
      return "CLASS"
    if text in modules or text == "os.path":
      return "MODULE"
    if text in parameters:
      return "PARAM"
  return "CODE"


def _role_target(text: str) -> str:
  """What a cross-reference shows: `Title <target>` shows Title, `~a.b.c` shows c."""
  title = re.match(r"(.+?)\s*<[^>]+>$", text)
  if title:
    return title.group(1)
  text = text.lstrip("!")
  return text.rsplit(".", 1)[-1] if text.startswith("~") and "." in text else text.lstrip("~")


def tag_sentence(sentence: str, pattern: re.Pattern, parameters: Sequence[str]) -> Sentence:
  """(words, BIO tags) of one marked-up sentence, the marks removed."""
  words: list[str] = []
  tags: list[str] = []

  def plain(text: str) -> None:
    for word in _WORD.findall(text):
      words.append(word)
      tags.append("B-FUNC" if word.endswith("()") else "O")

  position = 0
  for match in pattern.finditer(sentence):
    plain(sentence[position : match.start()])
    position = match.end()
    groups = match.groupdict()
    role = groups.get("role") or ""
    text = (
      _role_target(groups["role_text"])
      if role
      else next(groups[k] for k in ("literal", "single", "quoted") if groups.get(k))
    ).strip()
    span = _WORD.findall(text)
    if not span:
      continue
    kind = entity_type(text, role, parameters)
    words += span
    tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(span) - 1)
  plain(sentence[position:])
  return words, tags


def document_sentences(text: str, pattern: re.Pattern, parameters: Sequence[str]):
  """The tagged sentences of one document that hold an entity and fit the length bounds."""
  prose = "\n".join("" if _CODE_LINE.match(line) else line for line in text.splitlines())
  for sentence in split_sentences(prose):
    words, tags = tag_sentence(sentence, pattern, parameters)
    if MIN_WORDS <= len(words) <= MAX_WORDS and any(tag != "O" for tag in tags):
      yield words, tags


@functools.cache
def python_tagged_sentences(test_percent: int = 10) -> dict[str, tuple[Sentence, ...]]:
  """{"train", "test"}: every tagged sentence, split by its document's name."""
  documents = [
    (f"topic:{name}", text, _TOPIC_SPAN, ()) for name, text in sorted(topics.topics.items())
  ]
  documents += [(d.name, d.text, _DOCSTRING_SPAN, d.parameters) for d in read_stdlib_docstrings()]
  split: dict[str, list[Sentence]] = {"train": [], "test": []}
  for name, text, pattern, parameters in documents:
    parameters = tuple(p for p in parameters if p not in ("self", "cls"))
    rows = document_sentences(text, pattern, parameters)
    split["test" if is_test_document(name, test_percent) else "train"].extend(rows)
  return {name: tuple(rows) for name, rows in split.items()}


def python_tag_counts(sentences: Sequence[Sentence]) -> dict[str, int]:
  """Entities of each type, plus sentences and words (the balance in docs/internalization.md)."""
  counts = collections.Counter(t[2:] for _, tags in sentences for t in tags if t[:2] == "B-")
  return {
    **{kind: counts[kind] for kind in ENTITY_TYPES},
    "sentences": len(sentences),
    "words": sum(len(words) for words, _ in sentences),
  }


@DATASETS.register("python_tags", modality="text")
def python_tags(
  workdir: str | None = None,
  seq_len: int = 64,
  label_all_tokens: bool = False,
  vocab_size: int = 4000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  test_percent: int = 10,
  window_overlap: int = -1,
) -> Dataset:
  """Tagged rows of the embedded Python text (see the module docstring). Give the pretraining
  run's `tokenizer_path` when fine-tuning; without one, a tokenizer is trained on the train
  sentences (cached in the workdir)."""
  sentences = python_tagged_sentences(test_percent)
  spec = TokenizerSpec(workdir, vocab_size, tokenizer_path, tokenizer_type, "python_tags")
  tokenizer = corpus_tokenizer([" ".join(words) for words, _ in sentences["train"]], spec)
  return tagged_dataset(sentences, tokenizer, seq_len, label_all_tokens, window_overlap)

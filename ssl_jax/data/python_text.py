"""English text that ships with Python: `pydoc_data.topics` and standard-library docstrings.

Documents are the reference topics plus every module/class/function docstring of the
pure-Python standard library (read with `ast`, so nothing is imported or executed). A stable
hash of each document's name assigns it to train or test, so held-out documents never leak.
Rows are packed (`ssl_jax.data.packing`): every document is [CLS] text [SEP], documents in a
seeded order fill rows of `seq_len` tokens end to end, and segment ids and per-document
positions keep attention inside each document.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import functools
import os
import sys
import sysconfig
from pydoc_data import topics

from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import TokenizerSpec, text_dataset
from ssl_jax.registry import DATASETS

# Test suites, IDEs and vendored code: large, repetitive or not English prose.
_SKIP_DIRS = {
  "test",
  "tests",
  "idlelib",
  "lib2to3",
  "tkinter",
  "turtledemo",
  "site-packages",
  "ensurepip",
  "distutils",
  "pydoc_data",
  "__pycache__",
  "lib-dynload",
}


@dataclasses.dataclass(frozen=True)
class Docstring:
  """One standard-library docstring: `name` is "<path>:<object>:<line>", `parameters` the
  documented function's argument names (empty for modules and classes)."""

  name: str
  text: str
  parameters: tuple[str, ...]


@functools.cache
def read_stdlib_docstrings() -> tuple[Docstring, ...]:
  """Every module/class/function docstring (of 40 characters or more) of the pure-Python
  standard library, in a deterministic order, read with `ast`."""
  found = []
  for relative, tree in _stdlib_trees():
    for node in ast.walk(tree):
      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        docstring = ast.get_docstring(node)
        if docstring and len(docstring) >= 40:
          where = getattr(node, "name", "<module>")
          parameters = ()
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
            every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
            parameters = tuple(a.arg for a in every)
          found.append(
            Docstring(f"{relative}:{where}:{getattr(node, 'lineno', 0)}", docstring, parameters)
          )
  return tuple(found)


@functools.cache
def stdlib_names() -> tuple[frozenset[str], frozenset[str]]:
  """(class names, module names) defined by the pure-Python standard library and builtins:
  every `class` statement's name and builtin type, every module's dotted import name."""
  classes = {name for name in dir(builtins) if isinstance(getattr(builtins, name), type)}
  modules = set(sys.stdlib_module_names)
  for relative, tree in _stdlib_trees():
    dotted = relative[: -len(".py")].replace(os.sep, ".")
    modules.add(dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted)
    classes.update(node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef))
  return frozenset(classes), frozenset(modules)


@functools.cache
def _stdlib_trees() -> tuple[tuple[str, ast.Module], ...]:
  """(path relative to the stdlib, parsed module) of every readable source file."""
  root = sysconfig.get_paths()["stdlib"]
  trees = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("config-"))
    for filename in sorted(f for f in filenames if f.endswith(".py")):
      path = os.path.join(dirpath, filename)
      try:
        with open(path, encoding="utf-8") as f:
          trees.append((os.path.relpath(path, root), ast.parse(f.read())))
      except (SyntaxError, UnicodeDecodeError, ValueError):
        continue
  return tuple(trees)


@functools.cache
def python_documents(stdlib_docstrings: bool = True) -> tuple[tuple[str, str], ...]:
  """(name, text) pairs in a deterministic order: the pydoc topics, then the docstrings."""
  documents = [(f"topic:{name}", text) for name, text in sorted(topics.topics.items())]
  if stdlib_docstrings:
    documents += [(doc.name, doc.text) for doc in read_stdlib_docstrings()]
  return tuple(documents)


@DATASETS.register("python_text", modality="text")
def python_text(
  workdir: str | None = None,
  seq_len: int = 128,
  vocab_size: int = 4000,
  tokenizer_path: str = "",
  tokenizer_type: str = "unigram",
  test_percent: int = 10,
  stdlib_docstrings: bool = True,
  order_seed: int = 0,
  extra_ids: int = 0,
) -> Dataset:
  """Tokenized rows of Python's own English text, split by document.

  Args:
    workdir: where a freshly trained tokenizer is cached (`<workdir>/tokenizer.model`).
    seq_len: tokens per packed row.
    vocab_size: sentencepiece vocabulary size when a tokenizer is trained.
    tokenizer_path: an existing sentencepiece model to load instead of training one.
    tokenizer_type: "unigram" or "bpe" when training.
    test_percent: percentage of documents held out for evaluation.
    stdlib_docstrings: include standard-library docstrings (else only the pydoc topics).
    order_seed: seed of the document order before packing.
    extra_ids: T5 sentinels `<extra_id_k>` appended to the vocabulary (span corruption).
  """
  spec = TokenizerSpec(workdir, vocab_size, tokenizer_path, tokenizer_type, "python_text")
  return text_dataset(
    python_documents(stdlib_docstrings), spec, seq_len, test_percent, order_seed, extra_ids
  )

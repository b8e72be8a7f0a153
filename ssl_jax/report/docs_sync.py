"""Generated blocks in markdown files: tables and figures rendered from results JSON.

A block is a marker comment, the generated text, and an end marker:

  <!-- table kind=label_efficiency json=experiments/results/label_efficiency.json key=digits -->
  | method | 1/class | ... |
  <!-- end -->

  <!-- figure kind=label_efficiency json=experiments/results/label_efficiency.json
       png=experiments/results/label_efficiency.png remeasure="python experiments/..." -->
  ![label_efficiency](../experiments/results/label_efficiency.png)
  ...the commands that draw it and re-measure it...
  <!-- end -->

`kind` names a renderer (ssl_jax.report.tables.TABLES, ssl_jax.plot.result_figures.FIGURES);
`json` and `png` are relative to the repository root; `key` picks a part of the record
("a/b" for nested keys). Rewriting a file replaces only the text between the markers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from typing import Any

from ssl_jax.errors import DataError
from ssl_jax.plot.figure_file import save_figure
from ssl_jax.plot.result_figures import FIGURES
from ssl_jax.report.tables import TABLES

BLOCK = re.compile(r"<!-- (table|figure) (.*?)-->\n(.*?)<!-- end -->", re.DOTALL)
REDRAW = "python -m ssl_jax.report"


@dataclasses.dataclass(frozen=True)
class Block:
  """One generated block: what it is, its options, and where it sits in its file."""

  what: str  # "table" or "figure"
  options: dict[str, str]
  start: int
  end: int
  body: str


def find_blocks(text: str, where: str) -> list[Block]:
  """The generated blocks of a markdown text; a marker with an unknown kind or a missing
  option is an error naming the file."""
  blocks = []
  for match in BLOCK.finditer(text):
    what, spec, body = match.group(1), match.group(2), match.group(3)
    if "<!-- table " in body or "<!-- figure " in body:
      raise DataError(f"{where}: the {what} block <!-- {what} {spec}--> has no <!-- end --> line.")
    options = dict(item.split("=", 1) for item in shlex.split(spec) if "=" in item)
    registry = TABLES if what == "table" else FIGURES
    required = ("kind", "json") + (("png",) if what == "figure" else ())
    missing = [key for key in required if key not in options]
    if missing:
      raise DataError(f"{where}: a {what} marker lacks {missing}: <!-- {what} {spec}-->")
    if options["kind"] not in registry:
      raise DataError(
        f"{where}: {what} kind={options['kind']!r} is unknown; valid: {sorted(registry)}."
      )
    blocks.append(Block(what, options, match.start(3), match.end(3), body))
  return blocks


def load_record(repo: str, options: dict[str, str], where: str) -> Any:
  path = os.path.join(repo, options["json"])
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, json.JSONDecodeError) as error:
    raise DataError(f"{where}: json={options['json']!r} cannot be read ({error}).") from error
  for key in filter(None, options.get("key", "").split("/")):
    if not isinstance(record, dict) or key not in record:
      choices = sorted(record) if isinstance(record, dict) else []
      raise DataError(f"{where}: key {key!r} is not in {options['json']}; its keys: {choices}.")
    record = record[key]
  return record


def figure_body(markdown_path: str, repo: str, options: dict[str, str]) -> str:
  """The image link and the commands under it: one redraws it, one re-measures its JSON."""
  image = os.path.relpath(os.path.join(repo, options["png"]), os.path.dirname(markdown_path))
  lines = [f"![{options['kind']}]({image})", "", f"Drawn from `{options['json']}` by `{REDRAW}`"]
  if "remeasure" in options:
    lines[-1] += f"; re-measured by `{options['remeasure']}`"
  return "\n".join(lines) + ".\n"


def render(markdown_path: str, repo: str, draw: bool) -> tuple[str, list[str]]:
  """(the file's text with every block regenerated, the blocks whose text was stale). With
  `draw`, each figure's PNG is drawn again too."""
  with open(markdown_path) as f:
    text = f.read()
  where = os.path.relpath(markdown_path, repo)
  pieces, stale, cursor = [], [], 0
  for block in find_blocks(text, where):
    record = load_record(repo, block.options, where)
    if block.what == "table":
      body = TABLES[block.options["kind"]](record).rstrip("\n") + "\n"
    else:
      body = figure_body(markdown_path, repo, block.options)
      if draw:
        save_figure(
          FIGURES[block.options["kind"]](record), os.path.join(repo, block.options["png"])
        )
    if body != block.body:
      label = block.options.get("key") or block.options["json"]
      stale.append(f"{where}: {block.what} {block.options['kind']} ({label})")
    pieces += [text[cursor : block.start], body]
    cursor = block.end
  pieces.append(text[cursor:])
  return "".join(pieces), stale


def markdown_files(repo: str) -> list[str]:
  """README.md and every docs/*.md."""
  docs = os.path.join(repo, "docs")
  pages = (
    sorted(os.path.join(docs, n) for n in os.listdir(docs) if n.endswith(".md"))
    if os.path.isdir(docs)
    else []
  )
  return [os.path.join(repo, "README.md"), *pages]


def sync(repo: str, check: bool) -> list[str]:
  """Rewrites the generated blocks of README.md and docs/ (and redraws their figures), or
  with `check` only reports the stale ones (and figures whose PNG is missing)."""
  stale = []
  for path in markdown_files(repo):
    text, stale_here = render(path, repo, draw=not check)
    stale += stale_here
    if check:
      with open(path) as f:
        blocks = find_blocks(f.read(), path)
      stale += [
        f"{os.path.relpath(path, repo)}: figure {b.options['png']} does not exist"
        for b in blocks
        if b.what == "figure" and not os.path.isfile(os.path.join(repo, b.options["png"]))
      ]
    elif stale_here:
      with open(path, "w") as f:
        f.write(text)
  return stale

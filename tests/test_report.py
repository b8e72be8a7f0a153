"""Tables and figures of README.md and docs/ rendered from the experiments' JSON."""

import json
import os
import re
import shutil

import pytest
from conftest import REPO

from ssl_jax.errors import DataError
from ssl_jax.plot.result_figures import FIGURES
from ssl_jax.report import docs_sync
from ssl_jax.report.__main__ import main as report_main
from ssl_jax.report.tables import TABLES


def _copy_repo(tmp_path):
  """README.md, docs/ and experiments/results/ in a scratch repository."""
  root = tmp_path / "repo"
  shutil.copytree(os.path.join(REPO, "docs"), root / "docs")
  shutil.copytree(os.path.join(REPO, "experiments", "results"), root / "experiments" / "results")
  shutil.copy(os.path.join(REPO, "README.md"), root / "README.md")
  return root


def _parse_table(markdown):
  """{row: [cell, ...]} of a markdown table (the header and rule lines left out)."""
  lines = [line for line in markdown.splitlines() if line.startswith("|")]
  return {
    cells[0]: cells[1:]
    for cells in ([c.strip() for c in row.strip("|").split("|")] for row in lines[2:])
  }


def test_the_docs_match_their_json():
  assert docs_sync.sync(REPO, check=True) == []
  blocks = [
    block
    for path in docs_sync.markdown_files(REPO)
    for block in docs_sync.find_blocks(open(path).read(), path)
  ]
  kinds = {(b.what, b.options["kind"]) for b in blocks}
  # Every experiment's table and figure is in the docs, and the README has a figure.
  assert {("figure", k) for k in FIGURES} <= kinds
  assert {("table", k) for k in ("results", "rows", "label_efficiency", "robustness")} <= kinds
  readme = docs_sync.find_blocks(open(os.path.join(REPO, "README.md")).read(), "README.md")
  assert any(b.what == "figure" for b in readme)
  assert len(open(os.path.join(REPO, "README.md")).read().splitlines()) < 250


def test_label_efficiency_table_round_trips_its_json():
  record = json.load(open(os.path.join(REPO, "experiments", "results", "label_efficiency.json")))
  for suite in ("digits", "text_gpt", "text"):
    rows = _parse_table(TABLES["label_efficiency"](record[suite]))
    assert list(rows) == list(record[suite])
    for name, cells in rows.items():
      expected = record[suite][name]
      for cell, column in zip(cells, ("1/class", "5/class", "10/class", "all")):
        mean, _, std = cell.partition(" ± ")
        assert float(mean) == pytest.approx(expected[column]["mean"], abs=0.05)
        assert float(std or 0) == pytest.approx(expected[column]["std"], abs=0.05)
      assert int(cells[4].replace(",", "")) == expected["trainable params"]


def test_results_table_merges_evaluators_and_shows_percentages():
  evals = {
    "linear_probe": {
      "simclr": {
        "acc@1/class": {"mean": 0.6781, "std": 0.05},
        "acc@all": {"mean": 0.983, "std": 0.0},
      }
    },
    "knn": {"simclr": {"knn acc (k=20)": 0.98148}, "raw pixels": {"knn acc (k=20)": 0.9796}},
  }
  assert TABLES["results"](evals).splitlines() == [
    "| features | acc@1/class | acc@all | knn acc (k=20) |",
    "|---|---|---|---|",
    "| simclr | 67.8 ± 5.0 | 98.3 | 98.1 |",
    "| raw pixels |  |  | 98.0 |",
  ]


def test_an_edited_table_or_json_is_stale_until_regenerated(tmp_path):
  root = _copy_repo(tmp_path)
  page = root / "docs" / "internalization.md"
  text = page.read_text()
  edited = text.replace("| linear probe | 80.1 ± 4.1 |", "| linear probe | 81.1 ± 4.1 |", 1)
  assert edited != text
  page.write_text(edited)
  assert docs_sync.sync(str(root), check=True) == [
    "docs/internalization.md: table label_efficiency (digits)"
  ]
  assert report_main(["--check", "--repo", str(root)]) == 1
  # Regenerating restores the table from its JSON (and draws the figures).
  assert report_main(["--repo", str(root)]) == 0
  assert page.read_text() == text
  assert docs_sync.sync(str(root), check=True) == []
  # A new measurement in the JSON makes the table stale in turn.
  results = root / "experiments" / "results" / "label_efficiency.json"
  record = json.loads(results.read_text())
  record["digits robustness"]["standard fine-tune"]["clean acc"] = 98.0
  results.write_text(json.dumps(record))
  assert docs_sync.sync(str(root), check=True) == [
    "docs/internalization.md: table robustness (digits robustness)"
  ]
  docs_sync.sync(str(root), check=False)
  assert re.search(r"\| standard fine-tune \| 98\.0 \| 95\.2 \| 64\.8 \|", page.read_text())


def test_figures_have_a_panel_per_suite_and_a_line_per_method():
  record = json.load(open(os.path.join(REPO, "experiments", "results", "label_efficiency.json")))
  suites = [s for s, v in record.items() if isinstance(v, dict) and not s.endswith("robustness")]
  figure = FIGURES["label_efficiency"](record)
  assert [ax.get_title() for ax in figure.axes] == suites
  for ax, suite in zip(figure.axes, suites):
    assert [line.get_label() for line in ax.get_lines()] == list(record[suite])
    # x: 1, 5, 10 and all labels per class.
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "5", "10", "all"]
  robust = FIGURES["robustness"](record)
  digits = robust.axes[0]
  assert digits.get_title() == "digits robustness"
  x, y = digits.get_lines()[1].get_data()
  assert list(x) == [0.0, 0.05, 0.1] and list(y) == [99.3, 96.5, 90.0]


def test_bad_markers_name_the_problem(tmp_path):
  root = _copy_repo(tmp_path)
  (root / "docs" / "extra.md").write_text(
    "<!-- table kind=histogram json=x.json -->\n<!-- end -->\n"
  )
  with pytest.raises(DataError, match=r"kind='histogram' is unknown; valid: \['active_learning'"):
    docs_sync.sync(str(root), check=True)
  (root / "docs" / "extra.md").write_text(
    "<!-- table kind=robustness json=experiments/results/label_efficiency.json key=nope -->\n"
    "<!-- end -->\n"
  )
  with pytest.raises(
    DataError, match="key 'nope' is not in experiments/results/label_efficiency.json"
  ):
    docs_sync.sync(str(root), check=True)
  assert report_main(["--check", "--repo", str(root)]) == 2
  (root / "docs" / "extra.md").write_text(
    "<!-- table kind=robustness json=a.json -->\n| x |\n"
    "<!-- table kind=robustness json=b.json -->\n<!-- end -->\n"
  )
  with pytest.raises(DataError, match="json=a.json --> has no <!-- end --> line"):
    docs_sync.sync(str(root), check=True)

"""The Colab notebooks run top to bottom (on tiny settings)."""

import json
import os

import pytest
from conftest import REPO


@pytest.mark.parametrize("notebook", ["quickstart.ipynb"])
def test_notebook_code_cells_run(notebook, monkeypatch, tmp_path):
  monkeypatch.setenv("QUICKSTART_STEPS", "2")
  monkeypatch.setenv("SSL_JAX_REPO", REPO)
  monkeypatch.chdir(tmp_path)
  with open(os.path.join(REPO, "colab", notebook)) as f:
    cells = json.load(f)["cells"]
  namespace = {}
  for cell in cells:
    if cell["cell_type"] != "code":
      continue
    # Shell and magic lines (!pip, %matplotlib) are Colab-only.
    source = "".join(line for line in cell["source"] if not line.lstrip().startswith(("!", "%")))
    exec(compile(source, f"{notebook}", "exec"), namespace)
  results = namespace["results"]
  assert results["step"] == 2
  assert set(results["evals"]) == {"linear_probe", "knn"}

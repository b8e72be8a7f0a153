"""Every file a run writes is as readable as the umask allows (a collaborator on a shared
filesystem can read config.json, results.json, rounds.json, the tokenizer and the figures),
and an atomic write leaves nothing behind when it fails."""

import os
import stat

import numpy as np
import pytest
from matplotlib.figure import Figure

from ssl_jax import files
from ssl_jax.data.tokenizer import train_tokenizer
from ssl_jax.plot.figure_file import save_figure


@pytest.fixture
def umask():
  """Sets the process umask for a test and restores it after."""
  previous = os.umask(0o022)
  os.umask(previous)
  yield lambda mask: os.umask(mask)
  os.umask(previous)


def _mode(path) -> int:
  return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_take_the_mode_the_umask_allows(tmp_path, umask, mask, mode):
  umask(mask)
  written = {
    "config.json": lambda p: files.write_json(p, {"a": np.float32(1.5), "b": [1, 2]}),
    "notes.md": lambda p: files.write_text(p, "| a |\n"),
    "tokenizer.bin": lambda p: files.write_bytes(p, b"\x00\x01"),
    "pool.npz": lambda p: files.write_npz(p, {"x": np.arange(3)}),
    "figure.png": lambda p: save_figure(Figure(figsize=(1, 1)), p),
  }
  for name, write in written.items():
    write(str(tmp_path / "sub" / name))
    assert _mode(tmp_path / "sub" / name) == mode, name
  assert sorted(os.listdir(tmp_path / "sub")) == sorted(written)  # no temporary file left
  assert (
    tmp_path / "sub" / "config.json"
  ).read_text() == '{\n  "a": 1.5,\n  "b": [\n    1,\n    2\n  ]\n}\n'
  with np.load(tmp_path / "sub" / "pool.npz") as saved:
    np.testing.assert_array_equal(saved["x"], [0, 1, 2])


def test_a_trained_tokenizer_is_readable_by_others(tmp_path, umask):
  umask(0o022)
  texts = [f"line {i} of some text about tokenizers and files" for i in range(200)]
  train_tokenizer(texts, str(tmp_path / "tok.model"), vocab_size=50)
  assert _mode(tmp_path / "tok.model") == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = str(tmp_path / "results.json")
  files.write_json(path, {"step": 1})
  with pytest.raises(TypeError, match="not JSON serializable"):
    files.write_json(path, {"step": object()})
  assert os.listdir(tmp_path) == ["results.json"]
  assert (tmp_path / "results.json").read_text() == '{\n  "step": 1\n}\n'

"""Progress lines with an ETA, and the evaluators that report them."""

import io

import numpy as np
import pytest
from conftest import tiny_simclr_config

from ssl_jax import progress as progress_module
from ssl_jax.evals.knn import knn_predict
from ssl_jax.progress import Progress


class Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_lines_in_a_log_wait_for_the_delay_then_come_every_interval():
  clock, stream = Clock(), io.StringIO()
  progress = Progress(
    "probe", 4, stream=stream, delay=3.0, interval=10.0, clock=clock, enabled=True
  )
  clock.now += 2.0
  progress.advance()  # 2 s in: under the delay, quiet
  assert stream.getvalue() == ""
  clock.now += 2.0
  progress.advance()  # 4 s, 2 of 4 done: 2 s per unit, 4 s left
  clock.now += 5.0
  progress.advance()  # 5 s after the last line: under the interval
  clock.now += 1.0
  progress.advance()  # the last unit always shows
  assert stream.getvalue().splitlines() == [
    "probe: 2/4 (50%) | 0m04s elapsed | ETA 0m04s",
    "probe: 4/4 (100%) | 0m10s elapsed | done",
  ]


def test_a_terminal_line_is_rewritten_in_place():
  class Terminal(io.StringIO):
    def isatty(self):
      return True

  clock, stream = Clock(), Terminal()
  progress = Progress("kNN", 3, stream=stream, delay=0.0, clock=clock, enabled=True)
  for _ in range(2):
    clock.now += 1.0
    progress.advance()
  progress.close()  # stopped early: the line is ended
  assert stream.getvalue() == (
    "\r\033[KkNN: 1/3 (33%) | 0m01s elapsed | ETA 0m02s"
    "\r\033[KkNN: 2/3 (67%) | 0m02s elapsed | ETA 0m01s\n"
  )


def test_disabled_progress_and_empty_work_print_nothing():
  stream = io.StringIO()
  with Progress("x", 2, stream=stream, delay=0.0, enabled=False) as progress:
    progress.advance(2)
  assert stream.getvalue() == ""
  assert Progress("x", 0, stream=stream, enabled=True).line().startswith("x: 0/0 |")


def test_knn_in_chunks_matches_a_brute_force_vote():
  rng = np.random.default_rng(0)
  train, test = rng.normal(size=(50, 6)), rng.normal(size=(23, 6))
  labels = rng.integers(0, 4, 50)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  similarity = unit(test) @ unit(train).T
  expected = []
  for row in similarity:
    nearest = np.argsort(-row)[:5]
    scores = np.zeros(4)
    np.add.at(scores, labels[nearest], np.exp(row[nearest] / 0.1))
    expected.append(scores.argmax())
  for chunk in (7, 23, 1000):
    found = knn_predict(train, labels, test, k=5, temperature=0.1, num_classes=4, chunk=chunk)
    np.testing.assert_array_equal(found, expected)


@pytest.mark.e2e
def test_evaluators_report_progress(monkeypatch, capsys, tmp_path):
  from ssl_jax import train

  monkeypatch.setattr(progress_module, "DEFAULT_DELAY", 0.0)
  config = tiny_simclr_config(total_steps=2, checkpoint_every=2)
  config.evals = {"linear_probe": {"labels_per_class": (1,), "draws": 1}, "knn": {"k": 5}}
  train.train_and_evaluate(config, str(tmp_path / "run"))
  lines = capsys.readouterr().err.splitlines()
  done = [line for line in lines if line.endswith("| done")]
  assert any(line.startswith("simclr: linear probe solves: 3/3 (100%)") for line in done)
  assert any(line.startswith("simclr: kNN on raw pixels: 1/1 (100%)") for line in done)
  # Features of the 540 test images in eval batches of 64: 9 batches.
  assert any(line.startswith("simclr: trained features of test: 9/9 (100%)") for line in done)


@pytest.mark.parametrize("total", [1, 5])
def test_eta_is_the_mean_time_per_unit_times_what_is_left(total):
  clock = Clock()
  progress = Progress("w", total, stream=io.StringIO(), delay=0.0, clock=clock, enabled=True)
  clock.now += 6.0
  progress.advance()
  expected = "done" if total == 1 else "ETA 0m24s"
  assert progress.line().endswith(expected)

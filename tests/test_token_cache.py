"""The on-disk token cache behind text_files and tfds_text: built once in parallel workers, read
by row index, the same rows whatever the worker count, never read half written."""

import json
import os

import numpy as np
import pytest

from ssl_jax.data import corpus_shards, token_cache
from ssl_jax.data import tokenizer as tok
from ssl_jax.data.packing import pack_documents
from ssl_jax.data.pipeline import ShuffledBatches
from ssl_jax.data.text_corpus import is_test_document
from ssl_jax.errors import DataError
from ssl_jax.registry import DATASETS

WORDS = "the cat sat on a mat while dogs ran past big red doors under grey skies".split()


def _lines(count: int, seed: int = 0) -> list[str]:
  rng = np.random.default_rng(seed)
  return [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(count)]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("cache_corpus")
  lines = _lines(400)
  # CRLF line ends, a blank line and non-ASCII text: lines are still one document each.
  (root / "a.txt").write_bytes(("\r\n".join(lines[:200]) + "\r\n\r\nnaïve café\n").encode())
  (root / "b.txt").write_text("\n".join(lines[200:]) + "\n")
  return root


def _build(root, workdir, **options):
  options = {"paths": str(root / "*.txt"), "seq_len": 16, "vocab_size": 40, **options}
  return DATASETS.build("text_files", options, str(workdir))


def _arrays(split) -> dict[str, np.ndarray]:
  return {key: np.asarray(value) for key, value in split.items()}


def test_rows_are_the_shards_documents_packed_and_read_back_by_index(corpus_dir, tmp_path):
  data = _build(corpus_dir, tmp_path, shard_mb=0.002, tokenize_workers=1)
  cache = data.info["token_cache"]
  meta = token_cache.read_meta(cache)
  assert meta["dtype"] == "uint16"
  # Every split file holds exactly its rows: [rows, 3 columns, seq_len] uint16.
  for split in ("train", "test"):
    assert os.path.getsize(os.path.join(cache, f"{split}.rows")) == meta["rows"][split] * 96
  # Rebuild the expected rows by hand: each shard's documents (named by their line number in
  # the whole file), split by name, packed with the shard's own seed, shards in order.
  tokenizer = tok.load_tokenizer(data.info["tokenizer_path"])
  names = {str(corpus_dir / "a.txt"): "a.txt", str(corpus_dir / "b.txt"): "b.txt"}
  shards = [s for p in sorted(names) for s in corpus_shards.line_shards(p, int(0.002 * 2**20))]
  assert len(shards) > 4
  expected = {"train": [], "test": []}
  for index, shard in enumerate(shards):
    with open(shard.source, "rb") as f:
      f.seek(shard.start)
      lines = f.read(shard.stop - shard.start).decode().split("\n")
    docs = {"train": [], "test": []}
    for number, line in enumerate(lines, shard.first_name + 1):
      line = line.removesuffix("\r")
      if line.strip():
        name = f"{names[shard.source]}:{number}"
        docs["test" if is_test_document(name, 10) else "train"].append(line)
    for split, texts in docs.items():
      if texts:
        packed = pack_documents(tokenizer.encode(texts), 16, [0, index], 0, 2, 3)
        expected[split].append(packed)
  for split in ("train", "test"):
    got = _arrays(data.split(split))
    for column in ("tokens", "segment_ids", "positions"):
      want = np.concatenate([p[column] for p in expected[split]])
      np.testing.assert_array_equal(got[column], want)
  assert data.info["num_train_documents"] + data.info["num_test_documents"] == 401
  # The unigram counts the cache keeps are the train rows' non-padding tokens.
  train = _arrays(data.split("train"))
  counts = np.bincount(train["tokens"][train["segment_ids"] > 0], minlength=40)
  np.testing.assert_array_equal(data.info["train_token_counts"], counts)
  # Reads by index: any order, repeats, one row.
  split = data.split("train")
  picked = np.array([5, 0, 5, len(train["tokens"]) - 1, 1])
  np.testing.assert_array_equal(split.take(picked)["tokens"], train["tokens"][picked])
  np.testing.assert_array_equal(split["positions"][3], train["positions"][3])


def test_worker_processes_write_the_same_rows_and_a_second_start_reuses_them(
  corpus_dir, tmp_path, monkeypatch
):
  serial = _build(corpus_dir, tmp_path / "one", shard_mb=0.002, tokenize_workers=1)
  parallel = _build(
    corpus_dir,
    tmp_path / "two",
    shard_mb=0.002,
    tokenize_workers=2,
    tokenizer_path=serial.info["tokenizer_path"],
  )
  for split in ("train", "test"):
    a, b = _arrays(serial.split(split)), _arrays(parallel.split(split))
    for column in a:
      np.testing.assert_array_equal(a[column], b[column])

  # A second start reads the cache: no shard is tokenized again.
  def refuse(*args):
    raise AssertionError("tokenized again")

  monkeypatch.setattr(token_cache, "tokenize_shard", refuse)
  # Nor are the files read to cut shards: a second start only stats them.
  monkeypatch.setattr(corpus_shards, "line_shards", refuse)
  again = _build(corpus_dir, tmp_path / "one", shard_mb=0.002, tokenize_workers=1)
  assert again.info["token_cache"] == serial.info["token_cache"]
  np.testing.assert_array_equal(
    np.asarray(again.split("train")["tokens"]), np.asarray(serial.split("train")["tokens"])
  )
  # A changed row length (or corpus) is another cache, planned and tokenized anew.
  with pytest.raises(AssertionError, match="tokenized again"):
    _build(corpus_dir, tmp_path / "one", shard_mb=0.002, tokenize_workers=1, seq_len=24)


def test_a_changed_file_builds_a_new_cache(tmp_path):
  root = tmp_path / "corpus"
  root.mkdir()
  (root / "a.txt").write_text("\n".join(_lines(120)) + "\n")
  first = _build(root, tmp_path / "run")
  with open(root / "a.txt", "a") as f:
    f.write("\n".join(_lines(40, seed=1)) + "\n")
  second = _build(root, tmp_path / "run")
  assert first.info["token_cache"] != second.info["token_cache"]
  total = second.info["num_train_documents"] + second.info["num_test_documents"]
  assert total == 160


def test_a_failed_or_interrupted_build_is_never_read(corpus_dir, tmp_path):
  root = tmp_path / "corpus"
  root.mkdir()
  good = _lines(60)
  lines = [json.dumps({"text": t}) for t in good] + ["{broken"] + [json.dumps({"text": "x"})]
  (root / "c.jsonl").write_text("\n".join(lines) + "\n")
  options = {"paths": str(root / "c.jsonl"), "format": "jsonl", "shard_mb": 0.001}
  tokenizer_path = _build(corpus_dir, tmp_path / "tok").info["tokenizer_path"]
  # The bad line is in a later shard; its number is counted from the start of the file.
  for workers in (1, 2):
    with pytest.raises(DataError, match="c.jsonl:61 is not valid JSON"):
      _build(
        root, tmp_path / "run", tokenizer_path=tokenizer_path, tokenize_workers=workers, **options
      )
    left = sorted(os.listdir(tmp_path / "run" / "token_cache"))
    assert all(name.endswith(".lock") for name in left), left
  # A build that died mid-way (its partial directory) and a cache directory without its
  # meta.json are both thrown away and rebuilt.
  (root / "c.jsonl").write_text("\n".join(lines[:60]) + "\n")
  data = _build(root, tmp_path / "run", tokenizer_path=tokenizer_path, **options)
  cache = data.info["token_cache"]
  want = np.asarray(data.split("train")["tokens"])
  os.remove(os.path.join(cache, "meta.json"))
  os.makedirs(cache + ".partial-999")
  with open(os.path.join(cache, "train.rows"), "r+b") as f:
    f.truncate(10)
  data = _build(root, tmp_path / "run", tokenizer_path=tokenizer_path, **options)
  np.testing.assert_array_equal(np.asarray(data.split("train")["tokens"]), want)
  assert not os.path.exists(cache + ".partial-999")
  # Damage a complete cache's rows: the size check names the file instead of reading garbage.
  with open(os.path.join(cache, "train.rows"), "r+b") as f:
    f.truncate(10)
  with pytest.raises(DataError, match="train.rows holds 10 bytes"):
    _build(root, tmp_path / "run", tokenizer_path=tokenizer_path, **options)


def test_batches_over_the_cache_resume_exactly(corpus_dir, tmp_path):
  data = _build(corpus_dir, tmp_path, shard_mb=0.002)
  split = data.split("train")
  reference = ShuffledBatches(split, 8, seed=3, process_index=0, process_count=1)
  batches = [next(reference) for _ in range(12)]
  resumed = ShuffledBatches(split, 8, seed=3, process_index=0, process_count=1)
  resumed.set_state({**reference.get_state(), "position": 7})
  for batch in batches[7:]:
    got = next(resumed)
    for key in batch:
      np.testing.assert_array_equal(got[key], batch[key])
  # Each of two processes reads its half of the same global batch.
  halves = [ShuffledBatches(split, 8, seed=3, process_index=i, process_count=2) for i in (0, 1)]
  joined = np.concatenate([next(h)["tokens"] for h in halves])
  np.testing.assert_array_equal(joined, batches[0]["tokens"])


def test_bad_cache_options_are_named(corpus_dir, tmp_path):
  with pytest.raises(DataError, match="shard_mb=0 must be above 0"):
    _build(corpus_dir, tmp_path, shard_mb=0)
  with pytest.raises(DataError, match="tokenize_workers=-1 must be >= 0"):
    _build(corpus_dir, tmp_path, tokenize_workers=-1)
  assert not os.listdir(tmp_path)
  blocker = tmp_path.parent / f"{tmp_path.name}_file"
  blocker.write_text("not a directory")
  with pytest.raises(DataError, match=r"cache_dir=.*_file.*cannot hold the token cache"):
    _build(corpus_dir, tmp_path / "w", cache_dir=str(blocker / "cache"))
  assert not os.listdir(tmp_path)  # Refused before the tokenizer was trained.


def test_line_shards_cut_at_line_ends_and_count_the_lines_before(tmp_path):
  path = tmp_path / "a.txt"
  # A line longer than a shard, and no newline at the end.
  path.write_bytes(b"ab\ncd\n" + b"x" * 25 + b"\nef\ngh")
  shards = corpus_shards.line_shards(str(path), 8)
  pieces = [path.read_bytes()[s.start : s.stop] for s in shards]
  assert pieces == [b"ab\ncd\n", b"x" * 25 + b"\n", b"ef\ngh"]
  assert [s.first_name for s in shards] == [0, 2, 3]
  assert [s.num_bytes for s in shards] == [6, 26, 5]
  (tmp_path / "empty.txt").write_bytes(b"")
  assert corpus_shards.line_shards(str(tmp_path / "empty.txt"), 8) == []
  files = []
  for i, size in enumerate([5, 5, 20, 1]):
    files.append(str(tmp_path / f"f{i}.txt"))
    (tmp_path / f"f{i}.txt").write_bytes(b"y" * size)
  groups = corpus_shards.group_files(files, 10)
  assert [g.source for g in groups] == [tuple(files[:2]), (files[2],), (files[3],)]

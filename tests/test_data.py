"""Sources, the resumable batch pipeline, tokenizers and on-device augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import augment, packing, python_text, text_corpus, tokenizer
from ssl_jax.data.digits import digits
from ssl_jax.data.pipeline import ShuffledBatches, batches_in_order
from ssl_jax.errors import DataError


def test_digits_split_is_fixed_and_stratified():
  data = digits()
  train, test = data.split("train"), data.split("test")
  assert train["image"].shape == (1257, 8, 8, 1) and test["image"].shape == (540, 8, 8, 1)
  assert 0.0 <= train["image"].min() and train["image"].max() <= 1.0
  totals = np.bincount(train["label"]) + np.bincount(test["label"])
  assert np.all(np.abs(np.bincount(test["label"]) - 0.3 * totals) <= 1)  # Stratified.
  np.testing.assert_array_equal(digits().split("test")["label"], test["label"])


def test_batches_are_deterministic_resumable_and_cover_each_epoch():
  arrays = {"x": np.arange(100)}
  batches = ShuffledBatches(arrays, 16, seed=3, process_index=0, process_count=1)
  first = [next(batches)["x"] for _ in range(10)]
  epoch = np.concatenate(first[:6])  # 6 full batches of 16 per epoch of 100.
  assert len(set(epoch.tolist())) == 96
  resumed = ShuffledBatches(arrays, 16, seed=3, process_index=0, process_count=1)
  resumed.set_state({"position": 4, "seed": 3, "num_examples": 100, "global_batch_size": 16})
  for expected in first[4:]:
    np.testing.assert_array_equal(next(resumed)["x"], expected)
  with pytest.raises(ValueError, match="seed=3.*seed=4"):
    ShuffledBatches(arrays, 16, seed=4).set_state(batches.get_state())


def test_processes_get_disjoint_slices_of_the_global_batch():
  arrays = {"x": np.arange(64)}
  whole = next(ShuffledBatches(arrays, 16, seed=0, process_index=0, process_count=1))["x"]
  parts = [
    next(ShuffledBatches(arrays, 16, seed=0, process_index=i, process_count=4))["x"]
    for i in range(4)
  ]
  np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_batches_in_order_pads_the_last_batch():
  out = list(batches_in_order({"x": np.arange(5) + 1}, 2))
  assert [valid for _, valid in out] == [2, 2, 1]
  np.testing.assert_array_equal(out[-1][0]["x"], [5, 0])


def test_tokenizer_trains_saves_and_loads(tmp_path):
  texts = ["the quick brown fox jumps over the lazy dog"] * 50 + ["pack my box with jugs"] * 50
  path = str(tmp_path / "spm.model")
  tok = tokenizer.train_tokenizer(texts, path, vocab_size=34)
  ids = tok.encode(["the lazy fox"])[0]
  assert all(i > tokenizer.MASK_ID for i in ids)
  assert tok.decode(ids) == "the lazy fox"
  assert tokenizer.load_tokenizer(path).encode(["the lazy fox"])[0] == ids
  assert tok.sp.id_to_piece(tokenizer.MASK_ID) == "[MASK]"
  with pytest.raises(FileNotFoundError, match="missing.model"):
    tokenizer.load_tokenizer(str(tmp_path / "missing.model"))
  (tmp_path / "corrupt.model").write_bytes(b"not a sentencepiece model")
  with pytest.raises(DataError, match="corrupt.model' cannot be read as a sentencepiece model"):
    tokenizer.load_tokenizer(str(tmp_path / "corrupt.model"))


def test_python_text_splits_by_document_and_packs_rows(tmp_path):
  documents = python_text.python_documents(False)
  assert len(documents) > 50 and all(len(text) > 0 for _, text in documents)
  test_names = {n for n, _ in documents if text_corpus.is_test_document(n, 10)}
  assert 0 < len(test_names) < len(documents) // 4
  data = python_text.python_text(str(tmp_path), seq_len=32, vocab_size=300, stdlib_docstrings=False)
  train_split = data.split("train")
  rows, segments = train_split["tokens"], train_split["segment_ids"]
  assert rows.shape[1] == 32 and rows.shape == segments.shape == train_split["positions"].shape
  assert (tmp_path / "tokenizer.model").exists()  # Cached for the next run.
  assert data.info["vocab_size"] == 300
  # Each document appears exactly once, as [CLS] ... [SEP]; only the last row pads.
  assert np.sum(rows == tokenizer.SEP_ID) == data.info["num_train_documents"]
  assert np.sum(rows == tokenizer.CLS_ID) == data.info["num_train_documents"]
  assert not (segments[:-1] == 0).any()


def test_packing_keeps_every_document_whole_and_in_order_across_rows():
  docs = [[10, 11, 12], [20], [30, 31, 32, 33, 34]]
  packed = packing.pack_documents(docs, seq_len=4, order_seed=0, pad_id=0, bos_id=2, eos_id=3)
  order = np.random.default_rng(0).permutation(3)  # [2, 0, 1]
  expected_stream = sum(([2] + docs[i] + [3] for i in order), [])
  tokens, segments, positions = packed["tokens"], packed["segment_ids"], packed["positions"]
  np.testing.assert_array_equal(tokens.ravel()[: len(expected_stream)], expected_stream)
  np.testing.assert_array_equal(tokens.ravel()[len(expected_stream) :], 0)
  # Document 30..34 spans rows 0 and 1: it continues as a new segment with fresh positions.
  np.testing.assert_array_equal(segments, [[1, 1, 1, 1], [1, 1, 1, 2], [1, 1, 1, 1], [1, 1, 1, 0]])
  np.testing.assert_array_equal(positions, [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 2, 3], [0, 1, 2, 0]])
  with pytest.raises(ValueError, match="every document is empty"):
    packing.pack_documents([[], []], seq_len=4, order_seed=0, pad_id=0)


def test_augmentation_is_deterministic_per_key_and_in_range():
  images = jnp.asarray(digits().split("train")["image"][:16])
  cfg = augment.AugmentConfig(crop_scale=(0.3, 1.0), flip_prob=0.5, blur_prob=0.5, noise_std=0.1)
  fn = jax.jit(lambda key: augment.augment_batch(key, images, cfg))
  a, b, c = fn(jax.random.key(1)), fn(jax.random.key(1)), fn(jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert a.shape == images.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_full_crop_without_jitter_is_the_identity():
  image = jnp.asarray(digits().split("train")["image"][0])
  cfg = augment.AugmentConfig(
    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, brightness=0.0, contrast=0.0
  )
  out = augment.augment_image(jax.random.key(0), image, cfg)
  np.testing.assert_allclose(out, image, atol=1e-5)


def test_gaussian_blur_preserves_mean_of_a_constant_and_smooths_an_impulse():
  constant = jnp.full((8, 8, 1), 0.5)
  np.testing.assert_allclose(augment.gaussian_blur(constant, jnp.array(1.0)), 0.5, atol=1e-6)
  impulse = jnp.zeros((8, 8, 1)).at[4, 4, 0].set(1.0)
  blurred = augment.gaussian_blur(impulse, jnp.array(1.0))
  assert float(blurred[4, 4, 0]) < 0.5 and float(blurred[3, 4, 0]) > 0.0
  np.testing.assert_allclose(blurred.sum(), 1.0, atol=1e-5)

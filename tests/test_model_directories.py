"""Public checkpoints in, offline: model directories made here by transformers' own
`save_pretrained` (random BERT and GPT-2 with tokenizers trained on the embedded text by the
`tokenizers` library) are read as runs by `init_from` and by continued pretraining. Logits equal
transformers' within 1e-4, tokenization equals the tokenizers library's, and each refused input
is one `Error:` line, exit 2, nothing written."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import tiny_gpt_config, tiny_mlm_config, trained_steps
from hf_testing import bert_directory, embedded_texts, gpt2_directory
from safetensors.numpy import load_file

import ssl_jax.config_base
import ssl_jax.losses
import ssl_jax.parallel
import ssl_jax.run_setup
import ssl_jax.train  # noqa: F401  (registers the tasks and evaluators)
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_classification import encode_rows
from ssl_jax.data.text_corpus import vocabulary_info
from ssl_jax.data.tokenizer import load_tokenizer
from ssl_jax.errors import ConfigError, MissingInputError
from ssl_jax.runs.finished import load_finished_run
from ssl_jax.runs.model_dir import read_model_directory
from ssl_jax.runs.model_source import ARCHITECTURES
from ssl_jax.tasks.mlm import bert_mask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = embedded_texts(300)


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
  root = tmp_path_factory.mktemp("model_dirs")
  bert = bert_directory(str(root / "bert"), TEXTS)
  gpt2 = gpt2_directory(str(root / "gpt2"), TEXTS)
  return {"bert": (str(root / "bert"), bert), "gpt2": (str(root / "gpt2"), gpt2)}


def _like(path: str, length: int = 16) -> Dataset:
  """A one-row text dataset tokenized by `path`'s tokenizer (what a reader's data carries)."""
  info = vocabulary_info(load_tokenizer(path))
  return Dataset({"train": {"tokens": np.zeros((1, length), np.int32)}}, "text", "train", info)


def test_tokenization_equals_the_tokenizers_library(directories):
  from transformers import AutoTokenizer

  texts = TEXTS[:50]
  for name in ("bert", "gpt2"):
    path, _ = directories[name]
    ours, theirs = load_tokenizer(path), AutoTokenizer.from_pretrained(path)
    assert ours.encode(texts) == [
      e.ids for e in theirs.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    ]
    assert ours.vocab_size == len(theirs) == 400
  bert = load_tokenizer(directories["bert"][0])
  hf = AutoTokenizer.from_pretrained(directories["bert"][0])
  assert (bert.pad_id, bert.cls_id, bert.sep_id, bert.mask_id, bert.unk_id) == (
    hf.pad_token_id,
    hf.cls_token_id,
    hf.sep_token_id,
    hf.mask_token_id,
    hf.unk_token_id,
  )
  # A classification row is BERT's own "[CLS] text [SEP]" (the post-processor's), padded.
  rows = encode_rows(bert, texts, 24)
  expected = hf(texts, truncation=True, max_length=24, padding="max_length")["input_ids"]
  np.testing.assert_array_equal(rows, expected)
  # Word starts: a WordPiece piece continues a word when it starts with "##".
  table = bert.word_start_table()
  for i in (10, 100, 200, 399):
    assert table[i] == (not hf.convert_ids_to_tokens(i).startswith("##"))
  # GPT-2 declares one token for bos/eos/unk and none for padding or masking.
  gpt2 = load_tokenizer(directories["gpt2"][0])
  eos = AutoTokenizer.from_pretrained(directories["gpt2"][0]).eos_token_id
  assert (gpt2.cls_id, gpt2.sep_id, gpt2.pad_id, gpt2.mask_id) == (eos, eos, eos, None)
  assert gpt2.decode(gpt2.encode([TEXTS[0][:200]])[0]) == TEXTS[0][:200]


def test_imported_bert_logits_equal_transformers(directories):
  path, torch_model = directories["bert"]
  run = load_finished_run(path, _like(path), requires=())
  assert run.config.task == "bert_pretraining" and run.step == 0
  tokens = np.random.default_rng(0).integers(5, 400, (2, 20))
  valid = np.ones_like(tokens, bool)
  valid[1, 14:] = False
  types = np.zeros_like(tokens)
  types[:, 9:] = 1
  with torch.no_grad():
    out = torch_model(
      input_ids=torch.from_numpy(tokens),
      attention_mask=torch.from_numpy(valid.astype(np.int64)),
      token_type_ids=torch.from_numpy(types),
    )
  positions = jnp.broadcast_to(jnp.arange(20), tokens.shape)
  mlm, nsp = run.task.model.apply(
    {"params": run.variables["params"]},
    jnp.asarray(tokens),
    jnp.asarray(valid),
    positions,
    train=False,
    token_types=jnp.asarray(types),
  )
  np.testing.assert_allclose(mlm[0], out.prediction_logits[0].numpy(), atol=1e-4)
  np.testing.assert_allclose(mlm[1, :14], out.prediction_logits[1, :14].numpy(), atol=1e-4)
  np.testing.assert_allclose(nsp, out.seq_relationship_logits.numpy(), atol=1e-4)


def test_imported_gpt2_logits_equal_transformers(directories):
  path, torch_model = directories["gpt2"]
  run = load_finished_run(path, _like(path), requires=())
  assert run.config.task == "causal_lm"
  tokens = np.random.default_rng(1).integers(1, 400, (2, 24))
  with torch.no_grad():
    expected = torch_model(input_ids=torch.from_numpy(tokens)).logits.numpy()
  model, params = run.task.sampling_model(run.variables["params"])
  hidden = model.apply(
    {"params": params}, jnp.asarray(tokens), jnp.ones(tokens.shape, bool), train=False
  )
  logits = model.apply({"params": params}, hidden, method=lambda m, h: m.attend(h))
  np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_sharded_weights_are_read_like_one_file(directories, tmp_path):
  path, torch_model = directories["bert"]
  sharded = str(tmp_path / "sharded")
  torch_model.save_pretrained(sharded, max_shard_size="40KB")
  shutil.copy(os.path.join(path, "tokenizer.json"), sharded)
  assert os.path.isfile(os.path.join(sharded, "model.safetensors.index.json"))
  one = read_model_directory(path, tuple(ARCHITECTURES))
  many = read_model_directory(sharded, tuple(ARCHITECTURES))
  assert len(many.files) > 1
  a, b = one.state_dict(), many.state_dict()
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_fine_tuning_starts_from_the_directory(directories):
  path, _ = directories["bert"]
  config = ssl_jax.config_base.base_config()
  config.task = "classification"
  config.task_kwargs.update(dict(init_from=path, method="full"))
  config.model = "transformer_encoder"
  config.data = dict(name="python_packages", seq_len=32, tokenizer_path=path)
  config.optim.update(dict(name="adamw", learning_rate=1e-2, warmup_steps=0))
  config.batch_size, config.eval_batch_size = 16, 32
  config.total_steps = 2
  config.evals = {}
  (start, _), (end, _), metrics = trained_steps(config)
  weights = load_file(os.path.join(path, "model.safetensors"))
  np.testing.assert_array_equal(
    start["encoder"]["embed"]["token_embed"]["embedding"],
    weights["bert.embeddings.word_embeddings.weight"],
  )
  assert not np.array_equal(
    start["encoder"]["block_0"]["mlp_in"]["kernel"], end["encoder"]["block_0"]["mlp_in"]["kernel"]
  )
  assert np.isfinite(metrics["loss"])


def test_continued_pretraining_extends_positions_and_starts_at_the_imported_loss(directories):
  """MLM from the imported BertForPreTraining at twice its positions: the encoder and the MLM
  head carry over, the position table keeps its 64 rows and repeats them, and the first loss
  is the imported model's (transformers') masked-LM loss on the same masked batch."""
  path, torch_model = directories["bert"]
  config = tiny_mlm_config(
    **{"data.seq_len": 128, "data.tokenizer_path": path, "init_from": path, "evals": {}}
  )
  mesh = ssl_jax.parallel.make_mesh(config.mesh)
  ssl_jax.config_base.resolve_defaults(config)
  ssl_jax.config_base.validate_config(config)
  assert (config.model_kwargs.width, config.model_kwargs.max_length) == (32, 128)
  with jax.set_mesh(mesh):
    run = ssl_jax.run_setup.setup(config, None, mesh)
    params = jax.device_get(run.state.params)
    weights = load_file(os.path.join(path, "model.safetensors"))
    table = weights["bert.embeddings.position_embeddings.weight"]
    np.testing.assert_array_equal(
      params["encoder"]["embed"]["position_embed"], np.tile(table, (2, 1))
    )
    # Rows of the run's length whose text fits the imported model's 64 positions (the rest is
    # padding, which neither model reads), one document each.
    ids = np.concatenate(load_tokenizer(path).encode(TEXTS[:40]))
    tokens = np.zeros((4, 128), np.int32)
    tokens[:, :60] = ids[:240].reshape(4, 60)
    rng = jax.random.key(3)
    logits, targets, weights = run.task.masked_predictions(
      run.state.params, run.state.model_state, {"tokens": jnp.asarray(tokens)}, rng, False
    )
    ours = float(ssl_jax.losses.weighted_cross_entropy(logits, targets, weights))
    # The same masking (masked_predictions' key), fed to transformers.
    inputs, at, _, _ = bert_mask(
      jax.random.split(rng)[0], jnp.asarray(tokens), **run.task.mask_options
    )
  with torch.no_grad():
    out = torch_model(
      input_ids=torch.from_numpy(np.asarray(inputs, np.int64)[:, :64]),
      attention_mask=torch.from_numpy((tokens[:, :64] != 0).astype(np.int64)),
    ).prediction_logits.numpy()
  picked = np.take_along_axis(out, np.asarray(at)[..., None], axis=1)
  log_probs = (
    picked
    - np.log(np.exp(picked - picked.max(-1, keepdims=True)).sum(-1, keepdims=True))
    - picked.max(-1, keepdims=True)
  )
  nll = -np.take_along_axis(log_probs, np.asarray(targets)[..., None], axis=-1)[..., 0]
  theirs = float((nll * np.asarray(weights)).sum() / np.asarray(weights).sum())
  real = np.asarray(weights) > 0
  np.testing.assert_allclose(np.asarray(logits)[real], picked[real], atol=1e-4)
  assert abs(ours - theirs) < 1e-4 and ours > 1.0
  _, _, metrics = trained_steps(config, steps=2)
  assert np.isfinite(metrics["loss"])


def _main(*args):
  return subprocess.run(
    [sys.executable, "-m", "ssl_jax.main", *args],
    capture_output=True,
    text=True,
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    timeout=300,
  )


def _refused(result, *needles):
  assert result.returncode == 2, result.stderr
  assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
  for needle in needles:
    assert needle in result.stderr, result.stderr


def test_bad_model_directories_are_refused_before_any_work(directories, tmp_path):
  bert, gpt2 = directories["bert"][0], directories["gpt2"][0]
  pickled = tmp_path / "pickled"
  shutil.copytree(bert, pickled)
  os.remove(pickled / "model.safetensors")
  (pickled / "pytorch_model.bin").write_bytes(b"not read")
  unknown = tmp_path / "unknown"
  shutil.copytree(bert, unknown)
  hf_config = json.loads((unknown / "config.json").read_text())
  (unknown / "config.json").write_text(json.dumps({**hf_config, "architectures": ["T5Model"]}))
  empty = tmp_path / "empty"
  shutil.copytree(bert, empty)
  os.remove(empty / "model.safetensors")
  mismatched = tmp_path / "mismatched"
  shutil.copytree(bert, mismatched)
  (mismatched / "config.json").write_text(json.dumps({**hf_config, "num_attention_heads": 3}))
  damaged = tmp_path / "damaged"
  shutil.copytree(bert, damaged)
  (damaged / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
  mlm = ["--config", "configs/bert_python_text.py"]
  cases = [
    (["--config.init_from", str(pickled), f"--config.data.tokenizer_path={pickled}"], ["pickle"]),
    (["--config.init_from", str(unknown)], ["'T5Model'", "'BertForPreTraining'"]),
    (["--config.init_from", str(empty)], ["holds no weights"]),
    (
      ["--config.init_from", str(mismatched), f"--config.data.tokenizer_path={mismatched}"],
      ["weights do not match its config.json"],
    ),
    (
      ["--config.init_from", str(damaged), f"--config.data.tokenizer_path={damaged}"],
      ["is not a readable safetensors file"],
    ),
    ([f"--config.init_from={bert}"], [f"config.data.tokenizer_path='{bert}'"]),
    ([f"--config.data.tokenizer_path={gpt2}"], ["no mask token", "task 'mlm'"]),
  ]
  for i, (flags, needles) in enumerate(cases):
    workdir = tmp_path / f"w{i}"
    _refused(_main(*mlm, "--workdir", str(workdir), *flags), *needles)
    assert not workdir.exists()
  # A shape mismatch: a fine-tune whose data is another vocabulary's.
  with pytest.raises(ConfigError, match="tokenizer_path"):
    load_finished_run(bert, _like(gpt2), requires=())
  with pytest.raises(MissingInputError):
    read_model_directory(str(tmp_path / "nowhere"), tuple(ARCHITECTURES))


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_import_train_export_round_trip_loads_in_transformers(directories, tmp_path, name):
  """Import -> a short continued pretraining -> `ssl_jax.export` -> transformers'
  `from_pretrained` gives ssl_jax's logits (1e-4) and the same tokenizer."""
  import transformers

  from ssl_jax import export
  from ssl_jax.train import train_and_evaluate

  path, _ = directories[name]
  if name == "bert":
    config = tiny_mlm_config(**{"data.tokenizer_path": path, "init_from": path})
  else:
    config = tiny_gpt_config(**{"data.tokenizer_path": path, "init_from": path})
  config.total_steps, config.evals = 2, {}
  workdir = str(tmp_path / "run")
  train_and_evaluate(config, workdir)
  out = str(tmp_path / "exported")
  export.export(workdir, out)
  assert sorted(os.listdir(out)) == [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
  ]
  auto = transformers.AutoModelForMaskedLM if name == "bert" else transformers.AutoModelForCausalLM
  loaded = auto.from_pretrained(out).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(out)
  text = TEXTS[5][:120]
  ids = tokenizer(text, return_tensors="np")["input_ids"][:, :30]
  with torch.no_grad():
    theirs = loaded(input_ids=torch.from_numpy(ids)).logits.numpy()
  like = _like(out)
  run = load_finished_run(out, like, requires=())
  tokens = jnp.asarray(ids, jnp.int32)
  valid = jnp.ones(tokens.shape, bool)
  if name == "bert":
    at = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    ours = run.task.model.apply(
      {"params": run.variables["params"]}, tokens, valid, at, train=False
    )[0]
  else:
    model, params = run.task.sampling_model(run.variables["params"])
    hidden = model.apply({"params": params}, tokens, valid, train=False)
    ours = model.apply({"params": params}, hidden, method=lambda m, h: m.attend(h))
  np.testing.assert_allclose(np.asarray(ours).reshape(theirs.shape), theirs, atol=1e-4)
  # The exported weights are the trained ones, not the imported ones.
  before, after = (
    load_file(os.path.join(path, "model.safetensors")),
    load_file(os.path.join(out, "model.safetensors")),
  )
  key = "bert.embeddings.word_embeddings.weight" if name == "bert" else "transformer.wte.weight"
  assert before[key].shape == after[key].shape and not np.array_equal(before[key], after[key])


def test_export_refuses_what_has_no_public_layout(tmp_path, mlm_workdir):
  from ssl_jax import export

  # The shared tiny MLM run is pre-norm (ssl_jax's default), which BERT cannot hold.
  out = tmp_path / "out"
  result = subprocess.run(
    [sys.executable, "-m", "ssl_jax.export", mlm_workdir, "--out", str(out)],
    capture_output=True,
    text=True,
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    timeout=300,
  )
  _refused(result, "cannot be written as BertForMaskedLM", "pre-norm")
  assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".export_")]
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "x").write_text("keep")
  with pytest.raises(ConfigError, match="is not an empty directory"):
    export.export(mlm_workdir, str(tmp_path / "full"))
  assert os.listdir(tmp_path / "full") == ["x"]


@pytest.mark.e2e
@pytest.mark.parametrize("learner", ["linear_head", "fine_tune"])
def test_active_learning_queries_from_a_model_directory(directories, tmp_path, learner):
  """The active-learning loop reads its encoder (linear head on the frozen features) and its
  per-round fine-tune from an imported BERT directory, with its tokenizer."""
  from conftest import load_config

  from ssl_jax.active import rounds

  path, _ = directories["bert"]
  config = load_config("active_learning_python_packages")
  config.init_from = path
  config.data.tokenizer_path = path
  config.data.seq_len = 32
  config.active.budgets = [20, 40]
  config.active.learner = learner
  if learner == "fine_tune":
    config.active.learner_kwargs = {
      "config_file": os.path.join(REPO, "configs", "classify_python_packages.py"),
      "overrides": {"total_steps": 3, "batch_size": 16, "eval_batch_size": 32},
    }
  else:
    config.active.learner_kwargs = {"steps": 20}
  result = rounds.run_active_learning(config, str(tmp_path / learner))
  assert list(result["curve"]) == ["20", "40"] and all(
    0 <= a <= 1 for a in result["curve"].values()
  )

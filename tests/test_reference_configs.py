"""The reference configs (the anchors' recipes) build at full size and train at their input
shape on synthetic data."""

import importlib.util
import os

import jax
import numpy as np
import pytest
from conftest import REPO

from ssl_jax import parallel, train
from ssl_jax.config_base import validate_config
from ssl_jax.data.synthetic import synthetic_like

TEXT_REFERENCE = ["bert_base_wikipedia", "gpt2_small_openwebtext"]
REFERENCE = sorted(
  f[:-3]
  for f in os.listdir(os.path.join(REPO, "configs", "reference"))
  if f.endswith(".py") and f[:-3] not in TEXT_REFERENCE
)


def reference_config(name):
  path = os.path.join(REPO, "configs", "reference", f"{name}.py")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def on_synthetic_data(config, num_examples):
  """The config with its dataset swapped for random images of the same shape and classes."""
  config.data = synthetic_like(config.data, num_examples)
  return config


def test_all_anchors_have_a_reference_config():
  assert REFERENCE == [
    "barlow_twins_cifar10_resnet18",
    "byol_cifar10_resnet18",
    "dino_imagenet_vits16",
    "mae_imagenet_vitb16",
    "moco_v3_cifar10_resnet18",
    "simclr_cifar10_resnet18",
    "vicreg_cifar10_resnet18",
  ]


@pytest.mark.parametrize("name", REFERENCE)
def test_full_size_model_builds(name):
  """Initialises the real model abstractly (shapes only) and checks its size."""
  config = reference_config(name)
  assert config.data.name == "tfds"
  validate_config(config)
  config = on_synthetic_data(config, 4)
  task = train.build_task(config, train.build_dataset(config, None))
  image = np.zeros((2, config.data.image_size, config.data.image_size, 3), np.float32)
  params, _ = jax.eval_shape(task.init, jax.random.key(0), {"image": image})
  encoder = sum(np.prod(p.shape) for p in jax.tree.leaves(params["encoder"]))
  expected = {"resnet18": 11.2e6, "vit_b": 85.8e6, "vit_s": 21.7e6}[config.model]
  assert abs(encoder - expected) / expected < 0.02, encoder


@pytest.mark.e2e
@pytest.mark.parametrize("name", REFERENCE)
def test_trains_two_steps_at_its_input_shape(name, devices):
  """Two steps at the dataset's image size with the model and heads narrowed for CPU."""
  config = on_synthetic_data(reference_config(name), 8)
  config.batch_size, config.eval_batch_size = 8, 8
  config.optim.warmup_steps = 0
  config.model = {"resnet18": "resnet", "vit_b": "vit", "vit_s": "vit"}[config.model]
  if config.model == "resnet":
    config.model_kwargs.update(dict(stage_sizes=(1, 1), width=8))
  else:
    config.model_kwargs.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
  for key in (
    "projector_hidden_dim",
    "predictor_hidden_dim",
    "projector_dim",
    "hidden_dim",
    "out_dim",
    "bottleneck_dim",
    "decoder_width",
  ):
    if key in config.task_kwargs:
      config.task_kwargs[key] = 16
  for key in ("decoder_depth", "decoder_heads"):
    if key in config.task_kwargs:
      config.task_kwargs[key] = 1
  if "num_local_crops" in config.task_kwargs:
    config.task_kwargs.num_local_crops = 2
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
    state, metrics = run.train_step(run.state, run.example)
    state, metrics = run.train_step(state, run.example)
  assert run.example["image"].shape[1:] == (config.data.image_size,) * 2 + (3,)
  assert np.isfinite(float(metrics["loss"]))
  assert int(state.step) == 2


# --- Language ----------------------------------------------------------------------------------


def _hf_parameter_count(model_class, config) -> int:
  import torch

  with torch.device("meta"):  # shapes only: nothing is allocated
    model = model_class(config)
  return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", TEXT_REFERENCE)
def test_text_reference_models_have_the_published_size(name):
  """BERT-base and GPT-2 small built abstractly at full size have exactly the parameters of
  transformers' BertForMaskedLM (less BERT's unused token-type table) / GPT2LMHeadModel."""
  import transformers

  from ssl_jax.registry import MODELS
  from ssl_jax.tasks.mlm import MaskedLMModel

  config = reference_config(name)
  validate_config(config)
  dims = dict(config.model_kwargs, vocab_size=config.data.vocab_size)
  if name.startswith("bert"):
    model = MaskedLMModel(MODELS.build(config.model, dict(dims, max_length=512)))
    tokens = np.zeros((1, 512), np.int32)
    args = (tokens, tokens >= 0, np.zeros((1, 8), np.int32))
    expected = (
      _hf_parameter_count(transformers.BertForMaskedLM, transformers.BertConfig(vocab_size=30522))
      - 2 * 768
    )
  else:
    model = MODELS.build(config.model, dict(dims, max_length=1024))
    tokens = np.zeros((1, 1024), np.int32)
    args = (tokens, tokens >= 0)
    expected = _hf_parameter_count(transformers.GPT2LMHeadModel, transformers.GPT2Config())
    assert expected == 124_439_808  # GPT-2 small, tied embeddings
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *args, train=False))
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))
  assert count == expected


@pytest.mark.e2e
@pytest.mark.parametrize("name", TEXT_REFERENCE)
def test_text_reference_trains_two_steps_at_its_sequence_length(name, devices):
  """On synthetic token rows of the config's length, narrowed to the tiny preset and a 1000
  token vocabulary: what `benchmarks/train_step.py --synthetic` runs at full size on a GPU."""
  config = reference_config(name)
  config.data = synthetic_like(config.data, 8)
  assert config.data.to_dict() == {
    "name": "synthetic_text",
    "seq_len": config.data.seq_len,
    "vocab_size": {"bert": 30522, "gpt2": 50257}[name.split("_")[0]],
    "extra_ids": 0,
    "num_train": 8,
    "num_test": 8,
  }
  config.data.vocab_size = 1000  # GPT-2's 50257 would make 1.6 GB of logits on a CPU
  config.model_kwargs.update(dict(size="tiny", dtype="float32"))
  config.batch_size, config.eval_batch_size = 8, 8
  config.optim.warmup_steps = 0
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
    state, metrics = run.train_step(run.state, run.example)
    state, metrics = run.train_step(state, run.example)
  assert run.example["tokens"].shape == (8, config.data.seq_len)
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 2


def test_synthetic_text_rows_are_packed_documents_of_text_tokens():
  from ssl_jax.data.synthetic import synthetic_text
  from ssl_jax.registry import ConfigError

  data = synthetic_text(seq_len=32, vocab_size=50, extra_ids=3, num_train=6, num_test=2)
  train_rows = data.split("train")
  assert train_rows["tokens"].shape == (6, 32) and data.split("test")["tokens"].shape == (2, 32)
  tokens, segments, positions = (train_rows[k] for k in ("tokens", "segment_ids", "positions"))
  text = tokens[(tokens > 4)]
  assert text.min() >= 5 and text.max() < 47  # never a special id or one of the 3 sentinels
  for _, row_segments, row_positions in zip(tokens, segments, positions):
    for segment in set(row_segments.tolist()) - {0}:
      where = np.flatnonzero(row_segments == segment)
      np.testing.assert_array_equal(
        row_positions[where], np.arange(len(where)) + row_positions[where[0]]
      )
  info = data.info
  assert info["text_vocab_size"] == 47 and info["special_ids"] == (0, 2, 3, 4)
  assert info["special_tokens"]["<extra_id_0..2>"] == [49, 47]
  assert info["word_start"][[0, 1, 2, 3, 4, 47, 48, 49]].all()
  with pytest.raises(ConfigError, match="vocab_size=8 with extra_ids=3"):
    synthetic_text(vocab_size=8, extra_ids=3)

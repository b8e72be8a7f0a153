"""`ssl_jax.features`: features (and logits) of a finished run or a model directory for the
user's own inputs, batched over the 8-device mesh, equal to what the run's task computes on
one device, and to transformers' hidden states for an imported BERT."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hf_testing import bert_directory, embedded_texts

from ssl_jax import features
from ssl_jax.data.digits import digits
from ssl_jax.data.source import unit_float_images
from ssl_jax.errors import ConfigError


def test_image_features_equal_the_tasks_own_on_any_count(simclr_workdir, devices):
  images = digits().split("test")["image"][:37]  # not a multiple of the batch or the mesh
  model = features.load(simclr_workdir, batch_size=16)
  out = model(images)
  assert set(out) == {"features"} and out["features"].shape[0] == 37
  run = model.run
  expected = run.task.represent(
    run.variables["params"], run.variables["model_state"], unit_float_images({"image": images})
  )
  np.testing.assert_allclose(out["features"], np.asarray(expected), atol=1e-5)
  # uint8 images in [0, 255] are what decoded files give: the same features as floats.
  as_bytes = np.round(images * 255).astype(np.uint8)
  np.testing.assert_allclose(
    model(as_bytes)["features"], model(as_bytes.astype(np.float32) / 255.0)["features"], atol=1e-6
  )
  with pytest.raises(ConfigError, match=r"takes images of shape \[N, 8, 8, 1\]"):
    model(images[:, :4])


def test_text_features_of_a_model_directory_equal_transformers(tmp_path, devices):
  texts = embedded_texts(200)
  torch_model = bert_directory(str(tmp_path / "bert"), texts)
  model = features.load(str(tmp_path / "bert"), batch_size=8)
  mine = ["Return the absolute value.", "Open a file and return a stream.", "x" * 3]
  out = model(mine)["features"]
  from transformers import AutoTokenizer

  encoded = AutoTokenizer.from_pretrained(str(tmp_path / "bert"))(
    mine, padding=True, return_tensors="pt"
  )
  with torch.no_grad():
    hidden = torch_model.bert(**encoded).last_hidden_state.numpy()
  mask = encoded["attention_mask"].numpy()[..., None]
  expected = (hidden * mask).sum(1) / mask.sum(1)  # the mean over real tokens `represent` takes
  np.testing.assert_allclose(out, expected, atol=1e-4)
  assert np.asarray(jnp.asarray(out)).shape == (3, 32)


def test_a_fine_tune_gives_logits_too(tmp_path, devices):
  """A classifier fine-tuned from the imported BERT: features and logits, the logits equal to
  its task's on the rows the run's tokenizer makes."""
  from ssl_jax.config_base import base_config
  from ssl_jax.data.text_classification import encode_rows
  from ssl_jax.data.tokenizer import load_tokenizer
  from ssl_jax.train import train_and_evaluate

  path = str(tmp_path / "bert")
  bert_directory(path, embedded_texts(200))
  config = base_config()
  config.task = "classification"
  config.task_kwargs.update(dict(init_from=path, method="full"))
  config.model = "transformer_encoder"
  config.data = dict(name="python_packages", seq_len=32, tokenizer_path=path)
  config.batch_size, config.eval_batch_size, config.total_steps = 16, 32, 2
  config.checkpoint_every, config.log_every, config.evals = 2, 2, {}
  workdir = str(tmp_path / "classifier")
  train_and_evaluate(config, workdir)
  texts = ["Return a new list.", "Log a message with severity ERROR.", "Open a socket."]
  model = features.load(workdir, batch_size=8)
  out = model(texts)
  rows = encode_rows(load_tokenizer(path), texts, 32)
  run = model.run
  params, state = run.variables["params"], run.variables["model_state"]
  expected = run.task.logits(params, state, {"tokens": jnp.asarray(rows)}, None, train=False)
  assert out["logits"].shape == (3, run.task.num_classes) and out["features"].shape == (3, 32)
  np.testing.assert_allclose(out["logits"], np.asarray(expected), atol=1e-5)
  with pytest.raises(ConfigError, match="pass a list of strings"):
    model(np.zeros((2, 8, 8, 1), np.uint8))

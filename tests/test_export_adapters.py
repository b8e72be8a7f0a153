"""Fine-tuned taggers out of ssl_jax: a token classifier fine-tuned (fully, or with LoRA) from
an imported BERT exports as `BertForTokenClassification` with its tag names, LoRA merged into
the weights or as a PEFT adapter that `peft` puts back on the base directory; transformers'
logits equal ssl_jax's (1e-4)."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import load_config, trained_steps
from hf_testing import bert_directory, embedded_texts
from test_token_classification import write_conll

from ssl_jax import export
from ssl_jax.errors import ConfigError
from ssl_jax.runs.finished import load_finished_run
from ssl_jax.train import train_and_evaluate

# Whole fine-tuning runs: the e2e tier.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base_and_files(tmp_path_factory):
  root = tmp_path_factory.mktemp("taggers")
  bert_directory(str(root / "bert"), embedded_texts(200) + ["alice smith met bob in paris"] * 50)
  return (
    str(root / "bert"),
    write_conll(root / "train.txt", 100, 0),
    write_conll(root / "test.txt", 20, 1),
  )


def _fine_tune(tmp_path, base, train_path, test_path, method):
  config = load_config("tag_conll_files")
  config.task_kwargs.init_from = base
  config.task_kwargs.method = "peft" if method == "lora" else method
  if method == "lora":
    config.task_kwargs.peft = {"name": "lora", "rank": 4, "alpha": 8.0}
  config.data.update(
    dict(train_path=train_path, test_path=test_path, seq_len=24, tokenizer_path=base)
  )
  config.update(dict(total_steps=3, batch_size=16, eval_batch_size=16, checkpoint_every=3))
  config.optim.update(dict(learning_rate=1e-2, warmup_steps=0))
  config.evals = {}
  workdir = str(tmp_path / method)
  train_and_evaluate(config, workdir)
  return workdir


def _ours(workdir, tokens):
  run = load_finished_run(workdir, export.recorded_dataset(workdir), requires=())
  params, state = run.variables["params"], run.variables["model_state"]
  return np.asarray(run.task.token_logits(params, state, jnp.asarray(tokens), None, False)), run


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_fine_tuned_tagger_loads_in_transformers(base_and_files, tmp_path, method):
  import transformers

  base, train_path, test_path = base_and_files
  workdir = _fine_tune(tmp_path, base, train_path, test_path, method)
  out = str(tmp_path / "exported")
  export.export(workdir, out)
  loaded = transformers.AutoModelForTokenClassification.from_pretrained(out).eval()
  tokens = np.random.default_rng(0).integers(5, 400, (2, 24))
  ours, run = _ours(workdir, tokens)
  with torch.no_grad():
    theirs = loaded(input_ids=torch.from_numpy(tokens)).logits.numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-4)
  names = list(run.config.dataset_info.tag_names)
  assert [loaded.config.id2label[i] for i in range(len(names))] == names
  if method == "lora":
    # The adapter alone, put back on the base directory by peft itself.
    import peft

    adapter = str(tmp_path / "adapter")
    export.export(workdir, adapter, adapter=True)
    files = sorted(os.listdir(adapter))
    assert files[:2] == ["adapter_config.json", "adapter_model.safetensors"]
    settings = json.loads(open(os.path.join(adapter, "adapter_config.json")).read())
    assert (settings["r"], settings["lora_alpha"], settings["base_model_name_or_path"]) == (
      4,
      8.0,
      os.path.abspath(base),
    )
    on_base = transformers.AutoModelForTokenClassification.from_pretrained(
      base, num_labels=len(names)
    )
    restored = peft.PeftModel.from_pretrained(on_base, adapter).eval()
    with torch.no_grad():
      again = restored(input_ids=torch.from_numpy(tokens)).logits.numpy()
    np.testing.assert_allclose(ours, again, atol=1e-4)
  else:
    with pytest.raises(ConfigError, match="trained no LoRA adapters"):
      export.export(workdir, str(tmp_path / "no_adapter"), adapter=True)
    assert not os.path.exists(tmp_path / "no_adapter")


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_sequence_classifier_with_berts_pooler_loads_in_transformers(
  base_and_files, tmp_path, method
):
  """pooling="pooler" starts from the imported BertForPreTraining's pooler and exports as
  BertForSequenceClassification (merged, and for LoRA also as a PEFT adapter with the pooler
  and classifier saved whole); mean pooling has no such layout and is refused."""
  import transformers
  from safetensors.numpy import load_file

  from ssl_jax.config_base import base_config

  base = base_and_files[0]
  config = base_config()
  config.task = "classification"
  config.task_kwargs.update(dict(init_from=base, method="peft" if method == "lora" else "full"))
  config.task_kwargs.pooling = "pooler"
  if method == "lora":
    config.task_kwargs.peft = {"name": "lora", "rank": 4, "alpha": 8.0}
  config.model = "transformer_encoder"
  config.data = dict(name="python_packages", seq_len=32, tokenizer_path=base)
  config.update(dict(total_steps=3, batch_size=16, eval_batch_size=16, checkpoint_every=3))
  config.optim.update(dict(learning_rate=1e-2, warmup_steps=0))
  config.evals = {}
  workdir = str(tmp_path / "classifier")
  train_and_evaluate(config, workdir)
  run = load_finished_run(workdir, export.recorded_dataset(workdir), requires=())
  params, state = run.variables["params"], run.variables["model_state"]
  tokens = np.random.default_rng(1).integers(5, 400, (3, 32))
  ours = np.asarray(run.task.logits(params, state, {"tokens": jnp.asarray(tokens)}, None, False))
  out = str(tmp_path / "exported")
  export.export(workdir, out)
  loaded = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
  with torch.no_grad():
    theirs = loaded(input_ids=torch.from_numpy(tokens)).logits.numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-4)
  names = list(run.config.dataset_info.class_names)
  assert [loaded.config.id2label[i] for i in range(len(names))] == names
  if method == "lora":
    import peft

    # The pooler started from the pretraining's and is frozen only with the encoder.
    adapter = str(tmp_path / "adapter")
    export.export(workdir, adapter, adapter=True)
    on_base = transformers.AutoModelForSequenceClassification.from_pretrained(
      base, num_labels=len(names)
    )
    restored = peft.PeftModel.from_pretrained(on_base, adapter).eval()
    with torch.no_grad():
      again = restored(input_ids=torch.from_numpy(tokens)).logits.numpy()
    np.testing.assert_allclose(ours, again, atol=1e-4)
  else:
    # Before training, the pooler was the imported model's (BERT's pretraining pooler).
    (start, _), _, _ = trained_steps(config, steps=1)
    pooler = load_file(os.path.join(base, "model.safetensors"))["bert.pooler.dense.weight"]
    np.testing.assert_array_equal(start["pooler"]["kernel"], pooler.T)
    config.task_kwargs.pooling = "mean"
    mean_run = str(tmp_path / "mean")
    train_and_evaluate(config, mean_run)
    with pytest.raises(ConfigError, match="pooling='pooler'"):
      export.export(mean_run, str(tmp_path / "refused"))
    assert not os.path.exists(tmp_path / "refused")

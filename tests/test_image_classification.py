"""Image fine-tuning through the trainer: a run starts from a vision pretraining workdir
(weights and batch statistics), `method` decides what trains, the semi-supervised objectives
read paired batches, and adversarial training plus the robustness evaluator run end to end."""

import numpy as np
import pytest
from conftest import checkpoint_variables, load_config
from conftest import trained_steps as _trained
from conftest import trees_equal as _equal

from ssl_jax import train
from ssl_jax.registry import ConfigError


def fine_tune_config(workdir, per_class=2, unlabelled="drop", method="full", **task_kwargs):
  """A fine-tune of `workdir`; method "lora" is method "peft" with the config's LoRA block."""
  task_kwargs["method"] = "peft" if method == "lora" else method
  config = load_config("classify_digits")
  config.task_kwargs.update(dict(init_from=workdir, **task_kwargs))
  config.label_budget.update(dict(per_class=per_class, unlabelled=unlabelled))
  config.batch_size, config.eval_batch_size = 16, 128
  config.total_steps, config.log_every, config.checkpoint_every = 3, 3, 3
  config.optim.warmup_steps = 0
  return config


@pytest.mark.parametrize(
  "method",
  [
    "linear",
    pytest.param("lora", marks=pytest.mark.e2e),
    pytest.param("scratch", marks=pytest.mark.e2e),
  ],
)
def test_methods_load_weights_and_statistics_and_train_what_they_say(
  simclr_workdir, method, devices
):
  checkpoint = checkpoint_variables(simclr_workdir)
  (params, state), (end_params, end_state), metrics = _trained(
    fine_tune_config(simclr_workdir, method=method)
  )
  stats = state["batch_stats"]["encoder"]
  loaded = _equal(params["encoder"], checkpoint["params"]["encoder"]) and _equal(
    stats, checkpoint["model_state"]["encoder"]["batch_stats"]
  )
  assert loaded == (method != "scratch")
  assert np.isfinite(metrics["loss"]) and not _equal(params["head"], end_params["head"])
  assert _equal(params["encoder"], end_params["encoder"]) == (method in ("linear", "lora"))
  # A linear probe reads the frozen encoder in eval mode: its statistics stay pretrained.
  assert _equal(stats, end_state["batch_stats"]["encoder"]) == (method == "linear")
  if method == "lora":
    assert sorted(end_params["peft"])[:2] == [
      "encoder/BasicBlock_0/Conv_0",
      "encoder/BasicBlock_0/Conv_1",
    ]
    assert not _equal(params["peft"], end_params["peft"])


@pytest.mark.e2e
@pytest.mark.parametrize("objective", ["pretext", "fixmatch"])
def test_semi_supervised_objectives_add_an_unlabelled_loss(simclr_workdir, objective, devices):
  config = fine_tune_config(simclr_workdir, unlabelled="pair", semi_supervised={"name": objective})
  if objective == "fixmatch":
    config.task_kwargs.semi_supervised.threshold = 0.0
  (params, _), (end_params, _), metrics = _trained(config)
  assert metrics["loss"] == pytest.approx(
    metrics["supervised_loss"] + metrics["unlabelled_loss"], rel=1e-5
  )
  if objective == "pretext":
    # SimCLR's projector comes from the checkpoint and keeps training on every image.
    checkpoint = checkpoint_variables(simclr_workdir)["params"]
    assert _equal(params["pretext"]["projector"], checkpoint["projector"])
    assert not _equal(params["pretext"], end_params["pretext"])
    assert [k for k in metrics if k.startswith("pretext_")]  # SimCLR's own metrics, prefixed
  else:
    assert metrics["pseudo_label_rate"] == 1.0  # threshold 0: every prediction is kept


@pytest.mark.e2e
def test_adversarial_fine_tune_and_robustness_evaluator(simclr_workdir, tmp_path, devices):
  config = fine_tune_config(simclr_workdir, per_class=0, adversarial={"name": "pgd", "steps": 2})
  config.evals = {"robustness": dict(eps=(0.0, 0.3), steps=3, step_size=0.15), "classification": {}}
  results = train.train_and_evaluate(config, str(tmp_path))
  row = results["evals"]["robustness"]["image_classification"]
  # eps = 0 is no attack; a large budget can only lower the accuracy.
  assert row["pgd acc @ linf eps=0"] == pytest.approx(row["clean acc"])
  assert row["pgd acc @ linf eps=0.3"] < row["clean acc"]
  assert row["clean acc"] == pytest.approx(
    results["evals"]["classification"]["image_classification"]["test acc"]
  )


def test_fine_tuning_errors_name_the_fix(simclr_workdir, tmp_path):
  with pytest.raises(ConfigError, match="set config.label_budget.unlabelled='pair'"):
    train.build_task(
      fine_tune_config(simclr_workdir, semi_supervised={"name": "fixmatch"}),
      train.build_dataset(fine_tune_config(simclr_workdir), None),
    )
  config = fine_tune_config(simclr_workdir, method="peft")
  config.task_kwargs.peft = {"name": "prompt"}
  with pytest.raises(
    ConfigError,
    match=r"'prompt' works on \['text'\] inputs, not image; valid for image: "
    r"\['adapter', 'lora', 'prefix'\]",
  ):
    train.build_task(config, train.build_dataset(config, None))
  with pytest.raises(FileNotFoundError, match="config.json does not exist"):
    config = fine_tune_config(str(tmp_path))
    train.build_task(config, train.build_dataset(config, None))

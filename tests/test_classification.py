"""Fine-tuning through the trainer: a classification run starts from a pretraining workdir,
and `method` decides what trains."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import checkpoint_variables, load_config, trained_steps
from conftest import trees_equal as _equal

from ssl_jax import parallel, train
from ssl_jax.config_base import base_config
from ssl_jax.registry import DATASETS, ConfigError
from ssl_jax.runs.checkpoints import CheckpointMismatchError
from ssl_jax.runs.finished import read_config, shape_only_dataset


@pytest.fixture(scope="module")
def pretrained(mlm_workdir):
  """The shared 4-step MLM run on the pydoc topics (conftest)."""
  return mlm_workdir


def classification_config(workdir, method="full", **task_kwargs):
  """A fine-tune of `workdir`; `method` may name a PEFT method (method "peft" with that
  `peft` block)."""
  if method in PEFT:
    task_kwargs["peft"] = {"name": method, **task_kwargs.get("peft", {})}
    method = "peft"
  task_kwargs["method"] = method
  config = base_config()
  config.task = "classification"
  config.task_kwargs.update(dict(init_from=workdir, **task_kwargs))
  config.model = "transformer_encoder"
  config.data = dict(
    name="python_packages", seq_len=32, tokenizer_path=os.path.join(workdir, "tokenizer.model")
  )
  config.optim.update(dict(name="adamw", learning_rate=1e-2, warmup_steps=0))
  config.batch_size, config.eval_batch_size = 16, 32
  config.total_steps, config.log_every, config.checkpoint_every = 3, 3, 3
  config.evals = {"classification": {}}
  return config


def _trained(config):
  """(params before, params after two steps, metrics)."""
  (start, _), (end, _), metrics = trained_steps(config)
  return start, end, metrics


PEFT = {  # method -> its parameter count on the tiny encoder (width 32, 1 block, 2 heads)
  "lora": 2 * (32 * 8 + 8 * 32),  # query and value, rank 8
  "adapter": 2 * (32 * 16 + 16 + 16 * 32 + 32),  # attention and MLP outputs, size 16
  "prefix": 2 * 10 * 2 * 16,  # keys and values: 10 x 2 heads x 16
  "prompt": 10 * 32,  # 10 embeddings of width 32
}


# full and lora in the default suite; the other methods in e2e (each compiles its own step).
@pytest.mark.parametrize(
  "method",
  [
    m if m in ("full", "lora") else pytest.param(m, marks=pytest.mark.e2e)
    for m in ["full", "linear", "scratch", *PEFT]
  ],
)
def test_methods_start_from_the_checkpoint_and_train_what_they_say(pretrained, method, devices):
  checkpoint_params = checkpoint_variables(pretrained)["params"]
  config = classification_config(pretrained, method=method)
  start, end, metrics = _trained(config)
  # Pretrained weights in, except for the from-scratch baseline (same shapes, random).
  assert _equal(start["encoder"], checkpoint_params["encoder"]) == (method != "scratch")
  assert np.isfinite(float(metrics["loss"]))
  assert not _equal(start["head"], end["head"])
  assert _equal(start["encoder"], end["encoder"]) == (method == "linear" or method in PEFT)
  assert set(end) == {"encoder", "head"} | ({"peft"} if method in PEFT else set())
  if method in PEFT:
    assert not _equal(start["peft"], end["peft"])
    task = train.build_task(config, train.build_dataset(config, None))
    assert task.trainable_parameters(end) == PEFT[method] + 32 * 10 + 10


@pytest.mark.e2e
def test_layer_decay_and_freezing_by_regex(pretrained, devices):
  start, end, _ = _trained(classification_config(pretrained, freeze="regex:embed", layer_decay=0.5))
  assert _equal(start["encoder"]["embed"], end["encoder"]["embed"])
  assert not _equal(start["encoder"]["block_0"], end["encoder"]["block_0"])


def test_a_fine_tuning_run_trains_and_reports_accuracy(pretrained, tmp_path, devices):
  results = train.train_and_evaluate(
    classification_config(pretrained, method="linear"), str(tmp_path)
  )
  table = results["evals"]["classification"]
  assert set(table) == {"classification", "majority class"}
  assert 0.0 <= table["classification"]["test acc"] <= 1.0
  # linear: only the head trains, width 32 x 10 classes + 10 biases.
  assert table["classification"]["trainable params"] == 32 * 10 + 10
  # The majority class of the train split (asyncio on Python 3.11: 28 of the 165 test
  # docstrings; the embedded docstrings are the running Python's, so counted here).
  config = classification_config(pretrained)
  data = DATASETS.build(
    "python_packages", {k: v for k, v in config.data.items() if k != "name"}, None
  )
  majority = np.bincount(data.split("train")["label"]).argmax()
  test_labels = np.asarray(data.split("test")["label"])
  np.testing.assert_allclose(table["majority class"]["test acc"], np.mean(test_labels == majority))
  if sys.version_info[:2] == (3, 11):
    assert (data.info["class_names"][majority], len(test_labels)) == ("asyncio", 165)
    np.testing.assert_allclose(table["majority class"]["test acc"], 28 / 165)


def test_what_is_missing_or_mismatched_is_named(pretrained, tmp_path):
  config = classification_config(str(tmp_path))
  config.data.tokenizer_path = os.path.join(pretrained, "tokenizer.model")
  with pytest.raises(FileNotFoundError, match="config.json does not exist"):
    train.setup(config, None, parallel.make_mesh(base_config().mesh))
  config = classification_config(pretrained)
  config.data.tokenizer_path = ""
  config.data.vocab_size = 300
  with pytest.raises(ConfigError, match=r"vocabulary of 500 pieces, this data 300.*tokenizer"):
    train.setup(config, str(tmp_path), parallel.make_mesh(base_config().mesh))
  config = classification_config(pretrained)
  config.model_kwargs = dict(width=64)
  with pytest.raises(CheckpointMismatchError, match="does not match the one this config"):
    train.setup(config, None, parallel.make_mesh(base_config().mesh))
  # A text pretraining under an image fine-tune: named as such, not as a shape mismatch.
  image = load_config("classify_digits")
  image.task_kwargs.init_from = pretrained
  with pytest.raises(ConfigError, match=r"pretrained 'mlm' on text data; this data is image"):
    train.setup(image, None, parallel.make_mesh(base_config().mesh))
  with pytest.raises(
    ConfigError,
    match=r"Unknown config.task_kwargs.method 'adapters'.*'full', 'linear', 'peft', 'scratch'",
  ):
    train.setup(
      classification_config(pretrained, method="adapters"),
      None,
      parallel.make_mesh(base_config().mesh),
    )


def test_from_scratch_builds_config_model(pretrained, devices):
  config = classification_config(pretrained)
  config.task_kwargs.init_from = ""
  config.model_kwargs = dict(size="tiny", depth=1)
  start, end, metrics = _trained(config)
  assert start["encoder"]["block_0"]["mlp_in"]["kernel"].shape == (64, 256)
  assert "block_1" not in start["encoder"]
  assert not _equal(start["encoder"], end["encoder"]) and np.isfinite(float(metrics["loss"]))


@pytest.mark.e2e
def test_shipped_config_follows_init_from_for_the_tokenizer(pretrained, devices):
  from conftest import load_config

  config = load_config("classify_python_packages")
  config.task_kwargs.init_from = pretrained
  assert config.data.tokenizer_path == os.path.join(pretrained, "tokenizer.model")
  config.data.seq_len = 32  # the tiny pretraining model's length
  config.batch_size = 16
  start, end, _ = _trained(config)
  assert not _equal(start["encoder"], end["encoder"])


# --- Zero-shot --------------------------------------------------------------------------------

WORDS = "the,of,and,to,is,in,for,be,that,or"


def _zero_shot(workdir, **task_kwargs):
  """(task, params, model_state, test rows) of a zero-shot run (task "zero_shot") on `workdir`."""
  config = classification_config(workdir)
  config.task = "zero_shot"
  config.task_kwargs = dict(
    init_from=workdir, verbalizers=WORDS, prompt=" It is about", **task_kwargs
  )
  task = train.build_task(config, train.build_dataset(config, None))
  rows = task.dataset.split("test")["tokens"][:4]
  params, model_state = task.init(jax.random.key(0), {"tokens": rows})
  params, model_state = task.load_pretrained(params, model_state)
  return task, params, model_state, rows


def _text_of(row, room):
  """A row's [CLS] + text pieces (without [SEP] and padding), cut to `room` pieces."""
  row = [int(t) for t in row if t != 0]
  return row[:-1][:room]


@pytest.mark.e2e
def test_pet_scores_equal_the_masked_lm_at_the_mask(pretrained):
  from ssl_jax.data import tokenizer as tok

  task, params, model_state, rows = _zero_shot(pretrained)
  scores = np.asarray(task.logits(params, model_state, {"tokens": rows}, None, False))
  prompt = task.prompt.prompt.tolist()
  room = task.prompt.length - len(prompt) - 2  # the model's 32 positions
  assert _equal(params, checkpoint_variables(pretrained)["params"])  # the MLM as pretrained
  for i, row in enumerate(rows):
    sequence = jnp.asarray([_text_of(row, room) + prompt + [tok.MASK_ID, tok.SEP_ID]])
    at = jnp.asarray([[sequence.shape[1] - 2]])
    logits = task.pretext.model.apply({"params": params}, sequence, sequence != 0, at, train=False)
    expected = jax.nn.log_softmax(logits[0, 0])[task.prompt.verbalizers[:, 0]]
    np.testing.assert_allclose(scores[i], expected, atol=1e-5)
  assert task.trainable_parameters(params) == 0


@pytest.fixture(scope="module")
def pretrained_lm(gpt_workdir):
  """The shared 2-step causal LM on the pydoc topics (conftest), as small as the MLM."""
  return gpt_workdir


@pytest.mark.e2e
def test_causal_scores_equal_prefix_by_prefix_log_likelihoods(pretrained_lm):
  from ssl_jax.data import tokenizer as tok

  results = {}
  for scoring in ("sum", "per_token", "pmi"):
    task, params, model_state, rows = _zero_shot(pretrained_lm, scoring=scoring)
    results[scoring] = np.asarray(task.logits(params, model_state, {"tokens": rows}, None, False))
  decoder = task.pretext.model

  def by_hand(prefix, word):
    """log p(word | prefix), one next-token prediction at a time."""
    total = 0.0
    for k, piece in enumerate(word):
      sequence = jnp.asarray([prefix + word[:k]])
      hidden = decoder.apply({"params": params}, sequence, sequence > 0, train=False)
      logits = decoder.apply({"params": params}, hidden[:, -1], method=lambda m, h: m.attend(h))
      total += float(jax.nn.log_softmax(logits)[0, piece])
    return total

  prompt = task.prompt.prompt.tolist()
  words = [list(w[: int(n)]) for w, n in zip(task.prompt.verbalizers.tolist(), task.prompt.lengths)]
  room = task.prompt.length - len(prompt) - max(len(w) for w in words)
  expected = np.asarray([[by_hand(_text_of(r, room) + prompt, w) for w in words] for r in rows])
  np.testing.assert_allclose(results["sum"], expected, atol=1e-4)
  lengths = np.asarray([len(w) for w in words])
  np.testing.assert_allclose(results["per_token"], expected / lengths, atol=1e-4)
  alone = np.asarray([by_hand([tok.CLS_ID] + prompt, w) for w in words])
  np.testing.assert_allclose(results["pmi"], expected - alone, atol=1e-4)


def test_zero_shot_needs_a_language_model_to_score_with(pretrained, tmp_path):
  config = classification_config(pretrained)
  config.task, config.task_kwargs = "zero_shot", {"init_from": ""}
  with pytest.raises(ConfigError, match="init_from"):
    train.build_task(config, train.build_dataset(config, None))


@pytest.mark.e2e
def test_embedding_space_adversarial_training(pretrained, devices):
  def first_loss(**attack):
    config = classification_config(pretrained, method="full", **attack)
    return float(trained_steps(config, steps=1)[2]["supervised_loss"])

  clean = first_loss()
  # With a zero budget FreeLB's ascent never moves: the mean of its losses is the clean loss
  # (the same dropout masks at every step).
  assert first_loss(adversarial={"name": "freelb", "eps": 0.0, "steps": 2}) == pytest.approx(
    clean, rel=1e-6
  )
  # Embedding PGD trains on the loss after the ascent: higher than the clean one.
  pgd = {"name": "embedding_pgd", "eps": 2.0, "steps": 3, "step_size": 1.0}
  assert first_loss(adversarial=pgd) > clean
  with pytest.raises(ConfigError, match="valid for text: \\['embedding_pgd', 'freelb', 'none'\\]"):
    train.build_task(
      classification_config(pretrained, adversarial={"name": "fgsm"}),
      train.build_dataset(classification_config(pretrained), None),
    )


@pytest.mark.e2e
def test_freelb_run_and_text_robustness_evaluator(pretrained, tmp_path, devices):
  config = classification_config(pretrained, method="full", adversarial={"name": "freelb"})
  config.evals = {
    "classification": {"splits": ("test",)},
    "robustness": dict(eps=(0.0, 20.0), norm="l2", steps=3, step_size=10.0),
  }
  evals = train.train_and_evaluate(config, str(tmp_path))["evals"]
  row = evals["robustness"]["classification"]
  assert row["clean acc"] == evals["classification"]["classification"]["test acc"]
  assert row["embedding pgd acc @ l2 eps=0"] == row["clean acc"]
  assert row["embedding pgd acc @ l2 eps=20"] < row["clean acc"]


@pytest.mark.e2e
def test_task_weights_hold_only_what_trained_and_round_trip(pretrained, tmp_path, devices):
  from ssl_jax.adapt.task_weights import load_task_weights

  config = classification_config(pretrained, method="prompt")
  results = train.train_and_evaluate(config, str(tmp_path))
  exported = results["task_weights"]
  assert exported["parameters"] == PEFT["prompt"] + 32 * 10 + 10
  final = checkpoint_variables(str(tmp_path))["params"]
  # A fresh classifier with the pretrained encoder, plus the task weights, is the trained one.
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    fresh = jax.device_get(train.setup(config, None, mesh).state.params)
  restored = load_task_weights(exported["path"], fresh)
  assert not _equal(fresh, final) and _equal(restored, final)
  full_checkpoint = sum(
    os.path.getsize(os.path.join(root, name))
    for root, _, names in os.walk(os.path.join(pretrained, "checkpoints"))
    for name in names
  )
  assert exported["bytes"] < full_checkpoint / 4
  with pytest.raises(FileNotFoundError, match="task_weights.json is missing"):
    load_task_weights(str(tmp_path), fresh)


@pytest.mark.e2e
@pytest.mark.parametrize("pretraining", ["mlm", "causal_lm"])
def test_semi_supervised_adds_the_pretraining_lm_loss(
  pretrained, pretrained_lm, pretraining, devices
):
  from ssl_jax.registry import TASKS

  workdir = pretrained if pretraining == "mlm" else pretrained_lm
  config = classification_config(workdir, semi_supervised={"name": "pretext", "weight": 0.5})
  config.label_budget.update(dict(per_class=2, unlabelled="pair"))
  config.data.seq_len = 24  # shorter rows than both pretraining runs'
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
    params, batch = run.state.params, jax.device_get(run.example)
    loss, (metrics, _) = jax.jit(run.task.loss_fn)(
      params, run.state.model_state, batch, jax.random.key(3), run.state.step
    )
  # The pretraining task, rebuilt from its config.json, scores the unlabelled rows with the
  # classifier's encoder: a causal LM's params are the decoder itself; an MLM's are
  # {"encoder", its head from the checkpoint}.
  pconfig, variables = read_config(workdir), checkpoint_variables(workdir)
  assert pconfig.data.seq_len != config.data.seq_len  # so the LM keeps its own positions
  # The pretraining task as it was built: on rows of its own length.
  lm = TASKS.build(
    pconfig.task, pconfig.task_kwargs.to_dict(), pconfig, shape_only_dataset(pconfig, run.dataset)
  )
  if pretraining == "causal_lm":
    assert "pretext" not in params
    lm_params = params["encoder"]
    expected, _ = jax.jit(lm.loss_fn)(
      lm_params, {}, {"tokens": batch["tokens"]}, jax.random.key(0), 0
    )
  else:
    assert _equal(
      params["pretext"], {k: v for k, v in variables["params"].items() if k != "encoder"}
    )
    lm_params = {**params["pretext"], "encoder": params["encoder"]}
    # The masking draws from the key the task hands the pretext loss.
    unlabelled_key = jax.random.split(jax.random.key(3), 4)[3]
    expected, _ = jax.jit(lm.loss_fn)(lm_params, {}, {"tokens": batch["tokens"]}, unlabelled_key, 0)
  assert float(metrics["unlabelled_loss"]) == pytest.approx(float(expected), rel=1e-5)
  assert float(loss) == pytest.approx(
    float(metrics["supervised_loss"]) + 0.5 * float(expected), rel=1e-5
  )


# --- Every pretext with an encoder view fine-tunes the same way ---------------------------------


def _tiny_pretraining(name, tmp_path_factory):
  from conftest import load_config

  config = load_config(f"{name}_python_text")
  config.model_kwargs.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
  config.data.update(dict(seq_len=35, vocab_size=500, stdlib_docstrings=False))
  if name == "t5":
    config.data.extra_ids = 10
  config.batch_size, config.eval_batch_size = 16, 32
  config.total_steps, config.log_every, config.checkpoint_every = 2, 2, 2
  config.evals, config.optim.warmup_steps = {}, 1
  workdir = str(tmp_path_factory.mktemp(name))
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.mark.e2e
@pytest.mark.parametrize(
  "pretext, encoder_of",
  [
    # T5: the encoder stack, with the token table both stacks share as its embedding.
    ("t5", lambda p: {**p["encoder"], "embed": p["shared"]}),
    # ELECTRA: the discriminator, with the embeddings it shares with the generator.
    ("electra", lambda p: {**p["discriminator"], "embed": p["embed"]}),
  ],
)
def test_t5_and_electra_runs_fine_tune_like_bert_and_gpt(
  pretext, encoder_of, tmp_path_factory, devices
):
  workdir = _tiny_pretraining(pretext, tmp_path_factory)
  config = classification_config(workdir)  # the same command as from BERT: only init_from
  config.data.seq_len = 24
  checkpoint = checkpoint_variables(workdir)["params"]
  expected = encoder_of(checkpoint)
  (start, _), (end, _), metrics = trained_steps(config)
  assert jax.tree.structure(start["encoder"]) == jax.tree.structure(expected)
  assert _equal(start["encoder"], expected)
  assert np.isfinite(float(metrics["loss"])) and not _equal(start["encoder"], end["encoder"])
  if pretext == "t5":  # the 10 sentinels stay in the table, unused by the docstrings
    assert start["encoder"]["embed"]["token_embed"]["embedding"].shape == (510, 32)
  # The classifier's features are the pretraining task's own (its `represent`).
  task = train.build_task(config, train.build_dataset(config, None))
  rows = {"tokens": jnp.asarray(task.dataset.split("test")["tokens"][:8])}
  ours = task.represent({"encoder": expected, "head": start["head"]}, {}, rows)
  source = task.source
  theirs = source.task.represent(checkpoint, {}, rows)
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)

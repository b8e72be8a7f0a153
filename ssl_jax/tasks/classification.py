"""Supervised fine-tuning of a pretrained text encoder: a new linear head on pooled states,
trained through the same trainer, checkpoints, metrics and registry as pretraining.

  config.task = "classification"
  config.task_kwargs = {"init_from": "/tmp/bert_python_text", "method": "lora"}
  config.data = {"name": "python_packages",
                 "tokenizer_path": "/tmp/bert_python_text/tokenizer.model"}

`init_from` names a pretraining workdir: its `config.json` rebuilds the encoder (the model,
its options and the vocabulary; this config's `model_kwargs` override options such as
dropout) and its latest checkpoint supplies the weights; "" trains `config.model` from
scratch, the baseline every method has to beat. Methods:
  full     every weight trains (with `freeze` and `layer_decay` to shape that);
  linear   only the head trains (the frozen encoder's features: a linear probe);
  lora     the encoder is frozen and LoRA adapters (`lora_*` options) train with the head;
  adapter  the same with bottleneck adapters (`adapter_size`, `adapter_targets`);
  prefix   the same with `prefix_length` learned keys/values in every attention layer;
  prompt   the same with `prompt_length` learned input embeddings after [CLS];
  scratch  the same architecture (and tokenizer) as `init_from`, from random weights: the
           baseline, on identical terms.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax.adapt import adversarial as adversarial_lib
from ssl_jax.adapt import bottleneck, freeze, lora, prompts
from ssl_jax.adapt.zero_shot import single_token_verbalizers
from ssl_jax.data import tokenizer as tok
from ssl_jax.data.source import Dataset
from ssl_jax.data.tokenizer import Tokenizer
from ssl_jax.models.transformer import TextEmbedding
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.base import build_model, mean_over_valid, split_variables
from ssl_jax.tasks.fine_tuning import FineTuning, cross_entropy

POOLINGS = ("mean", "first")
ZERO_SHOT_SCORINGS = ("sum", "per_token", "pmi")
DEFAULT_PROMPT = " This is from the Python module"
TEXT_PRETRAINING = ("mlm", "causal_lm")


class TextClassifier(nn.Module):
  """encoder -> pooled hidden state (mean over real tokens, or the first token) -> dropout ->
  linear head."""

  encoder: nn.Module
  num_classes: int
  pooling: str = "mean"
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, valid: jnp.ndarray, train: bool) -> jnp.ndarray:
    hidden = self.encoder(tokens, valid, train=train)
    pooled = mean_over_valid(hidden, valid) if self.pooling == "mean" else hidden[:, 0]
    pooled = nn.Dropout(self.dropout_rate)(pooled, deterministic=not train)
    return nn.Dense(self.num_classes, name="head")(pooled.astype(jnp.float32))


def pretrained_encoder_params(params: dict[str, Any], task: str) -> dict[str, Any]:
  """The encoder's subtree of a pretraining task's params."""
  if task == "causal_lm":
    return params
  return params["encoder"]


@TASKS.register("classification")
class Classification(FineTuning):
  """Cross entropy of a `TextClassifier` on `batch["label"]`; see the module docstring and
  `FineTuning` for the shared options. Text-only options: layer_decay, pooling, head_dropout.
  """

  modality = "text"
  input_key = "tokens"

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    init_from: str = "",
    method: str = "full",
    freeze: str = "none",
    layer_decay: float = 1.0,
    pooling: str = "mean",
    head_dropout: float = 0.0,
    label_smoothing: float = 0.0,
    lora_rank: int = 8,
    lora_alpha: float = 16.0,
    lora_dropout: float = 0.0,
    lora_targets: str = r"attention/(query|value)$",
    adapter_size: int = 16,
    adapter_targets: str = r"(attention/out|mlp_out)$",
    prefix_length: int = 10,
    prompt_length: int = 10,
    adversarial: str = "none",
    adv_eps: float = 0.3,
    adv_steps: int = 2,
    adv_step_size: float = 0.15,
    semi_supervised: str = "none",
    unlabelled_weight: float = 1.0,
    pseudo_label_threshold: float = 0.95,
    prompt: str = DEFAULT_PROMPT,
    verbalizers: str = "",
    zero_shot_scoring: str = "per_token",
  ):
    if pooling not in POOLINGS:
      raise ConfigError(f"Unknown config.task_kwargs.pooling {pooling!r}; valid: {list(POOLINGS)}.")
    if adversarial not in ("none",) + adversarial_lib.EMBEDDING_MODES:
      raise ConfigError(
        f"Unknown config.task_kwargs.adversarial {adversarial!r}; valid for "
        f"text: {['none', *adversarial_lib.EMBEDDING_MODES]}."
      )
    if adversarial != "none" and (adv_eps < 0 or adv_steps < 1):
      raise ConfigError(
        f"Embedding-space adversarial training needs adv_eps >= 0 and "
        f"adv_steps >= 1; got adv_eps={adv_eps}, adv_steps={adv_steps}."
      )
    self.attack = dict(mode=adversarial, eps=adv_eps, steps=adv_steps, step_size=adv_step_size)
    if semi_supervised == "fixmatch":
      raise ConfigError(
        "semi_supervised='fixmatch' needs weak and strong views; text has "
        "none yet: use 'pretext' (the pretraining LM loss on unlabelled rows)."
      )
    super().__init__(
      config,
      dataset,
      init_from,
      method,
      freeze,
      label_smoothing,
      lora.LoraConfig(lora_rank, lora_alpha, lora_dropout, lora_targets),
      semi_supervised,
      unlabelled_weight,
      pseudo_label_threshold,
      bottleneck.AdapterConfig(adapter_size, adapter_targets),
      prompts.PrefixConfig(prefix_length),
      prompts.PromptConfig(prompt_length),
    )
    info = dataset.info
    seq_len = dataset.split(dataset.train_split)["tokens"].shape[1]
    model_config = config
    if init_from:
      model_config = self.pretrained_config
      pretrained_info = model_config.get("dataset_info", {})
      if pretrained_info.get("vocab_size") != info["vocab_size"]:
        raise ConfigError(
          f"The pretraining run in {init_from!r} has a vocabulary of "
          f"{pretrained_info.get('vocab_size')} pieces, this data {info['vocab_size']}: set "
          f"config.data.tokenizer_path={pretrained_info.get('tokenizer_path')!r}."
        )
      if model_config.task not in TEXT_PRETRAINING:
        raise ConfigError(
          f"Fine-tuning starts from {list(TEXT_PRETRAINING)} text "
          f"pretraining; init_from={init_from!r} holds a "
          f"{model_config.task!r} run."
        )
      # The fine-tune may change options that keep the shapes (dropout, remat, dtype); a
      # change of shape is caught when the weights are loaded.
      model_config = model_config.copy_and_resolve_references()
      model_config.model_kwargs.update(config.model_kwargs.to_dict())
      seq_len = int(model_config.data.get("seq_len", seq_len))
    self.model = TextClassifier(
      build_model(model_config, vocab_size=info["vocab_size"], max_length=seq_len),
      self.num_classes,
      pooling,
      head_dropout,
    )
    self.pad_id, self.mask_id = info["pad_id"], info["mask_id"]
    self.layer_decay = layer_decay
    self.zero_shot = None
    if method == "zero_shot":
      if not init_from:
        raise ConfigError(
          "method='zero_shot' scores with a pretrained language model: set "
          "task_kwargs.init_from to an 'mlm' or 'causal_lm' workdir."
        )
      words = (
        [w.strip() for w in verbalizers.split(",")] if verbalizers else list(info["class_names"])
      )
      if len(words) != self.num_classes:
        raise ConfigError(
          f"task_kwargs.verbalizers names {len(words)} words for "
          f"{self.num_classes} classes {list(info['class_names'])}."
        )
      self.zero_shot = ZeroShotPrompt.build(
        Tokenizer(info["tokenizer_path"]),
        prompt,
        words,
        model_config.task,
        zero_shot_scoring,
        seq_len,
        self.model.encoder.max_length,
      )

  # --- Parameters ---------------------------------------------------------------------------

  def init_model(self, rng, tokens):
    return split_variables(self.model.init(rng, tokens, tokens != self.pad_id, train=False))

  def model_args(self, tokens):
    return tokens, tokens != self.pad_id

  def pretext_config(self, pconfig):
    # A task sizes its model's position table from the rows it is given; the checkpoint's
    # table is as long as the pretraining rows, which fine-tuning rows need not match.
    pconfig = pconfig.copy_and_resolve_references()
    pconfig.model_kwargs.max_length = int(pconfig.data.seq_len)
    return pconfig

  def pretext_is_encoder(self) -> bool:
    return self.pretrained_config is not None and self.pretrained_config.task == "causal_lm"

  def encoder_checkpoint(self, variables):
    return pretrained_encoder_params(variables["params"], self.pretrained_config.task), {}

  def wrap_optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    if self.layer_decay != 1.0:
      tx = freeze.layerwise_decay(tx, self.model.encoder.dims["depth"], self.layer_decay)
    return super().wrap_optimizer(tx)

  # --- Forward --------------------------------------------------------------------------------

  def supervised_loss(self, params, model_state, tokens, labels, attack_key, forward_key):
    if self.attack["mode"] == "none":
      return super().supervised_loss(params, model_state, tokens, labels, attack_key, forward_key)

    # FreeLB / embedding PGD: the perturbation lives on the token embeddings of real tokens,
    # and every ascent step sees the same dropout masks.
    def loss_of(delta):
      logits, state = self.forward(
        params, model_state, tokens, forward_key, True, embedding_delta=delta
      )
      return cross_entropy(logits, labels, self.label_smoothing), (logits, state)

    shape = tokens.shape + (self.model.encoder.embedding_width,)
    mask = (tokens != self.pad_id)[..., None].astype(jnp.float32)
    loss, (logits, model_state) = adversarial_lib.embedding_adversarial_loss(
      loss_of,
      shape,
      mask,
      self.attack["eps"],
      self.attack["step_size"],
      self.attack["steps"],
      attack_key,
      self.attack["mode"],
    )
    return loss, logits, model_state

  def attacked_logits(
    self, params, model_state, tokens, labels, key, eps: float, steps: int, step_size: float
  ) -> jnp.ndarray:
    """Eval-mode logits after an embedding-space PGD attack (L2, per example, random start)
    on the cross entropy of `labels`: what the robustness evaluator measures on text."""

    def loss_of(delta):
      logits, _ = self.forward(params, model_state, tokens, None, False, embedding_delta=delta)
      return cross_entropy(logits, labels), logits

    shape = tokens.shape + (self.model.encoder.embedding_width,)
    mask = (tokens != self.pad_id)[..., None].astype(jnp.float32)
    _, logits = adversarial_lib.embedding_adversarial_loss(
      loss_of, shape, mask, eps, step_size, steps, key, "pgd"
    )
    return jax.lax.stop_gradient(logits)

  def forward(self, params, model_state, tokens, rng, train, embedding_delta=None):
    """(logits, model state); `embedding_delta` [batch, length, width] is added to the token
    embeddings (adversarial training)."""
    if embedding_delta is not None:
      with nn.intercept_methods(_add_to_embeddings(embedding_delta)):
        return self.forward(params, model_state, tokens, rng, train)
    if self.zero_shot is not None:
      return self.zero_shot_scores(params, model_state, tokens), model_state
    params, peft = self.split_params(params)
    if self.method == "prompt":
      # [MASK] fills the prompt's reserved positions: any non-padding token would do, as
      # the prompt vectors replace their embeddings.
      tokens = prompts.reserve_prompt_positions(
        tokens, self.prompt_config.length, self.mask_id, self.prompt_config.start
      )
    variables = {"params": params, **model_state}
    rngs = {"dropout": rng} if (rng is not None and train) else {}
    return self.apply_model(
      variables,
      peft,
      *self.model_args(tokens),
      train=train,
      rngs=rngs,
      dropout_key=rng if train else None,
    ), model_state

  def represent(self, params, model_state, batch):
    tokens = batch["tokens"]
    valid = tokens != self.pad_id
    hidden = self.model.apply(
      {"params": self.split_params(params)[0], **model_state},
      tokens,
      valid,
      False,
      method=lambda m, t, v, train: m.encoder(t, v, train=train),
    )
    return mean_over_valid(hidden, valid)

  # --- Zero-shot --------------------------------------------------------------------------------

  def zero_shot_scores(self, params, model_state, tokens):
    """[B, classes] scores of each label word after "text + prompt" (see ZeroShotPrompt)."""
    prompt = self.zero_shot
    encoder_params = {"params": {"encoder": params["encoder"]}, **model_state}
    if prompt.kind == "pet":
      sequences, valid, positions = prompt.masked(tokens, self.pad_id)
      mlm_params = {"params": {**params["pretext"], "encoder": params["encoder"]}}
      logits = self.pretext.model.apply(
        mlm_params, sequences, valid, positions[:, None], train=False
      )[:, 0]
      return jax.nn.log_softmax(logits.astype(jnp.float32))[:, prompt.verbalizers[:, 0]]

    def continuation(rows):
      sequences, valid, at, targets, weights = prompt.continuations(rows, self.pad_id)
      batch, classes, length = sequences.shape
      hidden = self.model.apply(
        encoder_params, sequences.reshape(-1, length), valid.reshape(-1, length), method=_encode
      )
      hidden = jnp.take_along_axis(hidden, at.reshape(batch * classes, -1)[..., None], axis=1)
      # The vocabulary is projected only where a verbalizer token is predicted.
      logits = self.model.apply(encoder_params, hidden, method=_attend)
      log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
      picked = jnp.take_along_axis(
        log_probs, targets.reshape(batch * classes, -1)[..., None], axis=-1
      )[..., 0].reshape(batch, classes, -1)
      return (picked * weights).sum(-1)

    scores = continuation(tokens)
    if prompt.scoring == "per_token":
      scores = scores / prompt.lengths
    elif prompt.scoring == "pmi":
      # Domain-conditional PMI (Holtzman et al. 2021): subtract each word's score after the
      # prompt alone, so words the LM likes everywhere stop winning by surface form.
      empty = (
        jnp.full((1, tokens.shape[1]), self.pad_id, tokens.dtype)
        .at[:, :2]
        .set(jnp.asarray([tok.CLS_ID, tok.SEP_ID], tokens.dtype))
      )
      scores = scores - continuation(empty)
    return scores


def _encode(module, tokens, valid):
  return module.encoder(tokens, valid, train=False)


def _attend(module, hidden):
  return module.encoder.attend(hidden)


@dataclasses.dataclass(frozen=True)
class ZeroShotPrompt:
  """A prompt appended to each example's text, and the label words scored after it.

  A row is "[CLS] text [SEP] [PAD]...". For a causal LM (lm-evaluation-harness style) the
  sequence "[CLS] text prompt word" is scored by log p(word | [CLS] text prompt), summed over
  the word's pieces ("sum"), divided by their number ("per_token"), or minus the same score
  without the text ("pmi"). For a masked LM (PET) the sequence is "[CLS] text prompt [MASK]
  [SEP]" and a class scores log p(its one-piece word at [MASK]).
  """

  kind: str  # "causal" or "pet"
  scoring: str
  prompt: np.ndarray  # [S] the prompt's pieces
  verbalizers: np.ndarray  # [C, V] each word's pieces, padded
  lengths: np.ndarray  # [C] pieces per word
  length: int  # positions of a scored sequence (at most the model's)

  @classmethod
  def build(
    cls,
    tokenizer: Tokenizer,
    prompt: str,
    words: list[str],
    pretraining_task: str,
    scoring: str,
    seq_len: int,
    max_length: int,
  ) -> ZeroShotPrompt:
    if scoring not in ZERO_SHOT_SCORINGS:
      raise ConfigError(
        f"Unknown config.task_kwargs.zero_shot_scoring {scoring!r}; valid: "
        f"{list(ZERO_SHOT_SCORINGS)}."
      )
    prompt_ids = tokenizer.encode([prompt])[0] if prompt else []
    if pretraining_task == "mlm":
      ids = [[i] for i in single_token_verbalizers(tokenizer, words)]
      kind = "pet"
    else:
      ids = [tokenizer.encode([" " + word])[0] for word in words]
      kind = "causal"
    width = max(len(i) for i in ids)
    if len(prompt_ids) + width + 8 > max_length:
      raise ConfigError(
        f"The zero-shot prompt ({len(prompt_ids)} pieces) and words (up to "
        f"{width}) leave too little of the pretrained model's {max_length} "
        "positions for the text: shorten them."
      )
    verbalizers = np.zeros((len(ids), width), np.int32)
    for c, pieces in enumerate(ids):
      verbalizers[c, : len(pieces)] = pieces
    # The text is cut (from its end) where "text prompt word" would not fit the model.
    length = min(seq_len + len(prompt_ids) + (2 if kind == "pet" else width), max_length)
    return cls(
      kind,
      scoring,
      np.asarray(prompt_ids, np.int32),
      verbalizers,
      np.asarray([len(i) for i in ids], np.float32),
      length,
    )

  def _layout(self, tokens: jnp.ndarray, extra: int):
    """Each row's text (up to its [SEP], cut to leave room) then the prompt, in rows of
    `self.length`: (sequences [B, L2], index [1, L2], where the prompt ends [B, 1])."""
    length = self.length
    index = jnp.arange(length)[None]
    cut = (tokens != tok.PAD_ID).sum(-1, keepdims=True) - 1  # the [SEP] position
    cut = jnp.minimum(cut, length - len(self.prompt) - extra)
    text = jnp.pad(tokens, ((0, 0), (0, max(0, length - tokens.shape[1]))))[:, :length]
    sequences = jnp.where(index < cut, text, tok.PAD_ID)
    if len(self.prompt):
      prompt = jnp.asarray(self.prompt)[jnp.clip(index - cut, 0, len(self.prompt) - 1)]
      sequences = jnp.where((index >= cut) & (index < cut + len(self.prompt)), prompt, sequences)
    return sequences, index, cut + len(self.prompt)

  def continuations(self, tokens: jnp.ndarray, pad_id: int):
    """Per class: sequences [B, C, L2], valid [B, C, L2], the positions that predict the
    word's pieces [B, C, V], the pieces [B, C, V] and their weights [B, C, V]."""
    del pad_id
    width = self.verbalizers.shape[1]
    sequences, index, end = self._layout(tokens, width)
    words = jnp.asarray(self.verbalizers)  # [C, V]
    offset = index - end  # [B, L2]: position inside the word
    piece = words[:, jnp.clip(offset, 0, width - 1)]  # [C, B, L2]
    inside = (offset >= 0)[None] & (
      offset[None] < jnp.asarray(self.lengths, jnp.int32)[:, None, None]
    )
    sequences = jnp.where(inside, piece, sequences[None]).transpose(1, 0, 2)
    valid = sequences != tok.PAD_ID
    batch, classes = tokens.shape[0], len(words)
    at = jnp.broadcast_to(end[:, None] - 1 + jnp.arange(width)[None, None], (batch, classes, width))
    targets = jnp.broadcast_to(words[None], (batch, classes, width))
    weights = jnp.broadcast_to(
      (jnp.arange(width)[None] < jnp.asarray(self.lengths)[:, None]).astype(jnp.float32)[None],
      (batch, classes, width),
    )
    return sequences, valid, at, targets, weights

  def masked(self, tokens: jnp.ndarray, pad_id: int):
    """PET: sequences [B, L2] ending "prompt [MASK] [SEP]", valid [B, L2], the [MASK]
    position [B]."""
    del pad_id
    sequences, index, end = self._layout(tokens, 2)
    sequences = jnp.where(index == end, tok.MASK_ID, sequences)
    sequences = jnp.where(index == end + 1, tok.SEP_ID, sequences)
    return sequences, sequences != tok.PAD_ID, end[:, 0]


def _add_to_embeddings(delta: jnp.ndarray):
  """An interceptor adding `delta` to the output of the encoder's token embedding."""

  def add(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, TextEmbedding) and context.method_name == "__call__":
      return out + delta.astype(out.dtype)
    return out

  return add

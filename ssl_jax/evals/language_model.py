"""Causal LM evaluation: held-out next-token loss, perplexity and accuracy beside a unigram
model of the training tokens, and sampled continuations of held-out documents."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.capabilities import NextTokenPredictor, SpanTargetPredictor
from ssl_jax.data.tokenizer import load_tokenizer
from ssl_jax.evals.context import EvalContext
from ssl_jax.losses import per_row_sums, token_nll
from ssl_jax.models import sampling
from ssl_jax.registry import EVALUATORS

UNIGRAM = "unigram (train token frequencies)"


def unigram_log_probs(counts: np.ndarray) -> np.ndarray:
  """log p(token) from add-one smoothed train token counts: the baseline that knows word
  frequencies but no context."""
  counts = np.asarray(counts, np.float64) + 1.0
  return np.log(counts / counts.sum())


def train_token_counts(dataset) -> np.ndarray:
  """[vocab] counts of the train split's tokens, padding excluded: the packed text sources
  count them while packing (`info["train_token_counts"]`, so a corpus on disk is not read
  again); other text datasets are counted here."""
  info = dataset.info
  if "train_token_counts" in info:
    return np.asarray(info["train_token_counts"])
  tokens = np.asarray(dataset.split(dataset.train_split)["tokens"])
  return np.bincount(tokens[tokens != info["pad_id"]].ravel(), minlength=info["vocab_size"])


def _prediction_report(
  ctx: EvalContext, split: str, predictions, accuracy_name: str
) -> dict[str, dict[str, float]]:
  """Loss, perplexity and accuracy of `predictions(params, model_state, batch, key)` ->
  (logits, targets, weights) over `split`, beside the add-one unigram model of the train
  tokens scored on the same targets."""
  unigram = jnp.asarray(unigram_log_probs(train_token_counts(ctx.dataset)))

  def batch_sums(params, model_state, batch, key):
    logits, targets, weights = predictions(params, model_state, batch, key)
    per_row = lambda x: per_row_sums(x, weights)
    return jnp.stack(
      [
        per_row(token_nll(logits, targets)),
        per_row(logits.argmax(-1) == targets),
        per_row(-unigram[targets]),
        per_row(targets == jnp.argmax(unigram)),
        weights.sum(-1),
      ],
      axis=-1,
    )

  nll, correct, unigram_nll, unigram_correct, count = ctx.split_sums(batch_sums, split)
  row = lambda loss, correct: {
    accuracy_name: correct / count,
    "loss": loss / count,
    "perplexity": float(np.exp(loss / count)),
  }
  return {ctx.name: row(nll, correct), UNIGRAM: row(unigram_nll, unigram_correct)}


@EVALUATORS.register("causal_lm", requires=(NextTokenPredictor,))
def causal_lm(ctx: EvalContext, split: str = "test") -> dict[str, dict[str, float]]:
  """{row: {"next-token acc", "loss", "perplexity"}} over every next-token target of `split`."""
  predictions = lambda params, model_state, batch, key: ctx.task.next_token_predictions(
    params, model_state, batch, key, train=False
  )
  return _prediction_report(ctx, split, predictions, "next-token acc")


@EVALUATORS.register("span_corruption", requires=(SpanTargetPredictor,))
def span_corruption(ctx: EvalContext, split: str = "test") -> dict[str, dict[str, float]]:
  """Held-out T5 span corruption (a fixed corruption per batch): loss, perplexity and accuracy
  over the text tokens of the targets (the hidden spans; sentinels and EOS, which a unigram
  model cannot know, are left out of every row)."""
  info = ctx.dataset.info
  regular_end = info["text_vocab_size"]
  special = jnp.asarray(info["special_ids"])

  def predictions(params, model_state, batch, key):
    logits, targets, weights = ctx.task.target_predictions(
      params, model_state, batch, key, train=False
    )
    text = (targets < regular_end) & ~jnp.isin(targets, special)
    return logits, targets, weights * text

  return _prediction_report(ctx, split, predictions, "span-token acc")


@EVALUATORS.register("lm_samples", requires=(NextTokenPredictor,))
def lm_samples(
  ctx: EvalContext,
  num_samples: int = 3,
  prompt_tokens: int = 12,
  max_new_tokens: int = 40,
  temperature: float = 0.8,
  top_k: int = 40,
  top_p: float = 1.0,
  split: str = "test",
) -> dict[str, dict[str, str]]:
  """Continues the first `prompt_tokens` of `num_samples` held-out documents and prints the
  prompt and the continuation; {"sample 1": {"prompt ⟶ continuation": text}, ...}."""
  model, params = ctx.task.sampling_model(jax.device_get(ctx.variables[0]))
  info = ctx.dataset.info
  rows = ctx.dataset.split(split)
  # Rows are read as needed (a split may live on disk): a few rows hold enough prompts.
  tokens = rows["tokens"]
  starts = rows["positions"] if "positions" in rows else None
  prompts = []
  # Prompts start at a document's beginning ([CLS] at position 0) and stay inside the row.
  for r in range(len(tokens)):
    row = np.asarray(tokens[r])
    candidates = np.flatnonzero(starts[r] == 0) if starts is not None else np.array([0])
    for c in candidates:
      if c + prompt_tokens <= len(row) and len(prompts) < num_samples:
        prompts.append(row[c : c + prompt_tokens])
    if len(prompts) == num_samples:
      break
  if not prompts:
    raise ValueError(f"No {prompt_tokens}-token prompt fits in the rows of split {split!r}.")
  prompt_len = min(prompt_tokens, model.max_length - 1)
  new_tokens = min(max_new_tokens, model.max_length - prompt_len)
  out = np.asarray(
    sampling.generate(
      model,
      params,
      jnp.asarray(np.stack(prompts))[:, :prompt_len],
      jax.random.key(ctx.seed),
      new_tokens,
      temperature,
      top_k,
      top_p,
    )
  )
  tokenizer = load_tokenizer(info["tokenizer_path"])
  samples = {}
  for i, row in enumerate(out, 1):
    prompt, continuation = (
      tokenizer.decode(row[:prompt_len].tolist()),
      tokenizer.decode(_until_end_of_document(row[prompt_len:], info["sep_id"]).tolist()),
    )
    samples[f"sample {i}"] = {"prompt ⟶ continuation": f"{prompt} ⟶ {continuation}"}
    print(f"[sample {i}] {prompt!r} ⟶ {continuation!r}", flush=True)
  return samples


def _until_end_of_document(tokens: np.ndarray, end_id: int) -> np.ndarray:
  ends = np.flatnonzero(tokens == end_id)
  return tokens[: ends[0]] if len(ends) else tokens

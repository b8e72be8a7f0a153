"""The verifiable toy task of reward fine-tuning (trlX's random walks): a fixed random directed
graph whose nodes are letters, and a goal node. A small GPT pretrains on random walks that
reach the goal (valid, but rarely the shortest); reward fine-tuning then asks it, from a start
node alone, for a path to the goal, scored by optimality (shortest / its length, 0 when the
path is not a path of the graph ending at the goal: `ssl_jax.rewards.path`).

  random_walks         the pretraining corpus: one walk per document, "c f h a"
  random_walk_prompts  the prompts: [CLS] and the start node, one per start node (train
                       repeats them `repeats` times; test holds each start node once)

Both build the same graph from (num_nodes, edge_prob, graph_seed) and record it in the
dataset's facts, so the reward reads the graph the model was trained on.
"""

from __future__ import annotations

import collections
import string

import numpy as np

from ssl_jax.data import tokenizer as tok
from ssl_jax.data.source import Dataset
from ssl_jax.data.text_corpus import TokenizerSpec, text_dataset
from ssl_jax.errors import ConfigError, DataError
from ssl_jax.registry import DATASETS

GOAL = 0  # node "a"


def node_names(num_nodes: int) -> list[str]:
  if not 2 <= num_nodes <= len(string.ascii_lowercase):
    raise ConfigError(f"config.data.num_nodes must be in [2, 26] (letters), got {num_nodes!r}.")
  return list(string.ascii_lowercase[:num_nodes])


def random_graph(num_nodes: int, edge_prob: float, seed: int) -> list[list[int]]:
  """Out-neighbour lists of a random directed graph without self-loops in which every node
  reaches GOAL: an edge with probability `edge_prob`, and a node that cannot reach the goal
  gets an edge to a random one that can."""
  node_names(num_nodes)
  if not 0.0 <= edge_prob <= 1.0:
    raise ConfigError(f"config.data.edge_prob must be in [0, 1], got {edge_prob!r}.")
  rng = np.random.default_rng(seed)
  adjacency = rng.random((num_nodes, num_nodes)) < edge_prob
  np.fill_diagonal(adjacency, False)
  adjacency[GOAL] = False  # a walk ends at the goal
  while True:
    reach = distances_to_goal([list(np.flatnonzero(r)) for r in adjacency]) >= 0
    stuck = np.flatnonzero(~reach)
    if not len(stuck):
      break
    node = stuck[0]
    adjacency[node, rng.choice(np.flatnonzero(reach))] = True
  return [[int(j) for j in np.flatnonzero(row)] for row in adjacency]


def distances_to_goal(edges: list[list[int]]) -> np.ndarray:
  """[num_nodes] shortest number of edges from each node to GOAL (-1: unreachable)."""
  incoming = collections.defaultdict(list)
  for i, targets in enumerate(edges):
    for j in targets:
      incoming[j].append(i)
  distance = np.full(len(edges), -1)
  distance[GOAL] = 0
  queue = collections.deque([GOAL])
  while queue:
    node = queue.popleft()
    for previous in incoming[node]:
      if distance[previous] < 0:
        distance[previous] = distance[node] + 1
        queue.append(previous)
  return distance


def random_walks_to_goal(
  edges: list[list[int]], num_walks: int, max_nodes: int, seed: int
) -> list[list[int]]:
  """`num_walks` walks from uniform random start nodes, each step to a uniform random
  out-neighbour, kept when they reach GOAL within `max_nodes` nodes."""
  rng = np.random.default_rng(seed)
  walks: list[list[int]] = []
  starts = [i for i in range(len(edges)) if i != GOAL]
  for _ in range(200 * num_walks):
    if len(walks) == num_walks:
      break
    walk = [int(rng.choice(starts))]
    while walk[-1] != GOAL and len(walk) < max_nodes:
      walk.append(int(rng.choice(edges[walk[-1]])))
    if walk[-1] == GOAL:
      walks.append(walk)
  if len(walks) < num_walks:
    raise DataError(
      f"Only {len(walks)} of {num_walks} random walks reached the goal within {max_nodes} "
      "nodes; raise config.data.max_nodes or edge_prob."
    )
  return walks


def graph_facts(num_nodes: int, edge_prob: float, graph_seed: int) -> dict:
  """The graph as dataset facts (JSON-able)."""
  edges = random_graph(num_nodes, edge_prob, graph_seed)
  return {
    "graph_edges": edges,
    "goal": GOAL,
    "node_names": node_names(num_nodes),
    "shortest_distances": [int(d) for d in distances_to_goal(edges)],
  }


@DATASETS.register("random_walks", modality="text")
def random_walks(
  workdir: str | None = None,
  num_nodes: int = 21,
  edge_prob: float = 0.3,
  graph_seed: int = 1002,
  num_walks: int = 4000,
  max_nodes: int = 12,
  walk_seed: int = 0,
  seq_len: int = 64,
  vocab_size: int = 28,
  tokenizer_path: str = "",
  test_percent: int = 10,
  order_seed: int = 0,
) -> Dataset:
  """Packed token rows of random walks that reach the goal (see the module docstring); the
  sentencepiece tokenizer (trained on the walks) gives each node letter its own piece."""
  facts = graph_facts(num_nodes, edge_prob, graph_seed)
  names = facts["node_names"]
  walks = random_walks_to_goal(facts["graph_edges"], num_walks, max_nodes, walk_seed)
  documents = [(f"walk{i}", " ".join(names[n] for n in w)) for i, w in enumerate(walks)]
  spec = TokenizerSpec(workdir, vocab_size, tokenizer_path, "unigram", "random_walks")
  dataset = text_dataset(documents, spec, seq_len, test_percent, order_seed)
  dataset.info.update(facts)
  return dataset


@DATASETS.register("random_walk_prompts", modality="text")
def random_walk_prompts(
  workdir: str | None = None,
  num_nodes: int = 21,
  edge_prob: float = 0.3,
  graph_seed: int = 1002,
  tokenizer_path: str = "",
  repeats: int = 16,
) -> Dataset:
  """Prompts "[CLS] <start node>" with the start node id ("start") for every node but the
  goal; the train split repeats them `repeats` times, the test split holds each once.
  `tokenizer_path` is the pretraining run's tokenizer (its `<workdir>/tokenizer.model`)."""
  del workdir
  if not tokenizer_path:
    raise ConfigError(
      "config.data.tokenizer_path is empty: point it at the random_walks pretraining run's "
      "tokenizer.model."
    )
  if int(repeats) < 1:
    raise ConfigError(f"config.data.repeats must be >= 1, got {repeats!r}.")
  facts = graph_facts(num_nodes, edge_prob, graph_seed)
  tokenizer = tok.load_tokenizer(tokenizer_path)
  starts = [i for i in range(num_nodes) if i != GOAL]
  encoded = [[tokenizer.cls_id, *tokenizer.encode([facts["node_names"][i]])[0]] for i in starts]
  length = max(len(e) for e in encoded)
  prompts = np.full((len(starts), length), tokenizer.pad_id, np.int32)
  for row, ids in enumerate(encoded):
    prompts[row, : len(ids)] = ids
  rows = {
    "prompt": prompts,
    "prompt_length": np.array([len(e) for e in encoded], np.int32),
    "start": np.array(starts, np.int32),
  }
  train = {key: np.tile(value, (repeats,) + (1,) * (value.ndim - 1)) for key, value in rows.items()}
  return Dataset({"train": train, "test": rows}, "text", info=prompt_info(tokenizer, facts))


def prompt_info(tokenizer: tok.TextTokenizer, extra: dict | None = None) -> dict:
  """The facts of a prompts dataset: the tokenizer's vocabulary and special ids, plus `extra`."""
  return {
    "vocab_size": tokenizer.vocab_size,
    "text_vocab_size": tokenizer.text_vocab_size,
    "tokenizer_path": tokenizer.path,
    "pad_id": tokenizer.pad_id,
    "bos_id": tokenizer.cls_id,
    "eos_id": tokenizer.sep_id,
    "special_ids": tokenizer.special_ids,
    **(extra or {}),
  }

"""The toy suite's verifiable reward: is the completion a shortest path to the goal?

The prompt gives the start node (the batch's "start"); the completion should name the next
nodes, space-separated, ending at the goal (`ssl_jax.data.random_walks`). The score is the
path's optimality, shortest distance / its number of edges, in (0, 1]; 0 when a name is not a
node, a step is not an edge of the graph, or the path does not end at the goal (reaching it
earlier and going on counts as not ending there).
"""

from __future__ import annotations

import numpy as np

from ssl_jax.rewards.base import REWARDS, Reward, RewardContext


def score_path(path: list[int], edges: list[set[int]], goal: int, distance: list[int]) -> float:
  """Optimality of a path given as node ids."""
  if len(path) < 2 or path[-1] != goal or goal in path[:-1]:
    return 0.0
  if any(b not in edges[a] for a, b in zip(path[:-1], path[1:])):
    return 0.0
  return distance[path[0]] / (len(path) - 1)


@REWARDS.register("shortest_path")
class ShortestPath(Reward):
  """Optimality of the generated path (see the module docstring); reads the graph from the
  prompts' dataset facts and the start node from the batch."""

  needs_info = ("graph_edges", "goal", "node_names", "shortest_distances")

  def __init__(self, context: RewardContext):
    super().__init__(context)
    info = context.info
    self.edges = [set(int(j) for j in targets) for targets in info["graph_edges"]]
    self.goal = int(info["goal"])
    self.distance = [int(d) for d in info["shortest_distances"]]
    self.node = {str(name): i for i, name in enumerate(info["node_names"])}

  def __call__(self, prompts, completions, batch):
    del prompts
    scores = []
    for start, text in zip(np.asarray(batch["start"]), self.completion_texts(completions)):
      nodes = [self.node.get(name, -1) for name in text.split()]
      if -1 in nodes:
        scores.append(0.0)
      else:
        scores.append(score_path([int(start), *nodes], self.edges, self.goal, self.distance))
    return np.array(scores, np.float32)

"""Query strategies against hand-computed choices on tiny pools, and the contract every
strategy keeps (distinct unlabelled indices, the budget, determinism per key)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.active.strategies import badge, bald, geometry, probcover, typiclust
from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool
from ssl_jax.active.strategies.uncertainty import entropy, least_confidence, negative_margin
from ssl_jax.errors import ConfigError

KEY = jax.random.key(0)


def _build(name, **options):
  return QUERY_STRATEGIES.build(name, options)


def test_uncertainty_scores_follow_their_formulas_and_pick_the_most_uncertain():
  probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0], [0.34, 0.33, 0.33]])
  np.testing.assert_allclose(least_confidence(probs), [0.1, 0.6, 0.5, 0.66], atol=1e-6)
  np.testing.assert_allclose(negative_margin(probs), [-0.85, -0.05, 0.0, -0.01], atol=1e-6)
  h = lambda p: -sum(x * math.log(x) for x in p if x > 0)
  np.testing.assert_allclose(entropy(probs), [h(p) for p in probs], atol=1e-6)
  labelled = np.array([False, False, False, True])  # the most uncertain row is labelled
  pool = Pool(labelled=labelled, probs=probs)
  assert list(_build("least_confidence").query(pool, 2, KEY)) == [1, 2]
  assert list(_build("margin").query(pool, 2, KEY)) == [2, 1]
  assert list(_build("entropy").query(pool, 1, KEY)) == [1]


def test_bald_is_the_mutual_information_hand_computed():
  # Example 0: the two masks disagree (0.9 vs 0.1); example 1: both say 0.5; example 2: both 0.9.
  mc = np.array([[[0.9, 0.1], [0.5, 0.5], [0.9, 0.1]], [[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]]])
  h09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
  expected = [math.log(2) - h09, 0.0, 0.0]
  np.testing.assert_allclose(bald.bald_scores(mc), expected, atol=1e-6)
  pool = Pool(labelled=np.zeros(3, bool), mc_probs=mc)
  assert _build("bald").query(pool, 1, KEY)[0] == 0


def _exact_joint_mutual_information(mc: np.ndarray, batch: list[int]) -> float:
  """I(y_batch; w) by enumerating every label configuration (the definition)."""
  samples, _, classes = mc.shape
  joint = 0.0
  for labels in itertools.product(range(classes), repeat=len(batch)):
    p = np.mean([np.prod([mc[s, i, c] for i, c in zip(batch, labels)]) for s in range(samples)])
    joint -= p * math.log(p) if p > 0 else 0.0
  conditional = sum(
    float(np.mean([-(mc[s, i] * np.log(mc[s, i])).sum() for s in range(samples)])) for i in batch
  )
  return joint - conditional


def test_batch_bald_avoids_a_duplicate_that_bald_takes():
  # 0 and 1 are copies (their masks disagree the same way); 2 disagrees along other masks and
  # has a slightly lower BALD. BALD takes both copies; BatchBALD takes 0 and then 2.
  a, b = [0.95, 0.05], [0.05, 0.95]
  c, d = [0.9, 0.1], [0.1, 0.9]
  mc = np.array([[a, a, c], [b, b, c], [a, a, d], [b, b, d]])
  pool = Pool(labelled=np.zeros(3, bool), mc_probs=mc)
  assert list(_build("bald").query(pool, 2, KEY)) == [0, 1]
  assert list(_build("batch_bald").query(pool, 2, KEY)) == [0, 2]
  # The greedy second step compares the exact joint information of each candidate batch.
  assert _exact_joint_mutual_information(mc, [0, 2]) > _exact_joint_mutual_information(mc, [0, 1])


def test_batch_bald_sampled_estimator_agrees_with_exact_enumeration():
  mc = np.asarray(jax.nn.softmax(jax.random.normal(jax.random.key(3), (8, 30, 3)) * 2, -1))
  pool = Pool(labelled=np.zeros(30, bool), mc_probs=mc)
  exact = _build("batch_bald", num_configurations=10_000).query(pool, 4, KEY)
  sampled = _build("batch_bald", num_configurations=20).query(pool, 4, KEY)
  assert list(exact[:3]) == list(sampled[:3])  # 27 configurations: the 3rd is already sampled
  information = lambda batch: _exact_joint_mutual_information(mc, list(batch))
  assert information(sampled) >= 0.97 * information(exact)


def test_coreset_picks_the_farthest_point_each_time():
  features = np.array([[0.0], [1.0], [2.0], [10.0], [6.0]])
  pool = Pool(labelled=np.array([True, False, False, False, False]), features=features)
  # 10 is farthest from 0; then 6 is 4 from 10 and 6 from 0: it is not; 2 is 2 from 0... the
  # farthest from {0, 10} is 6 (4 away from 10) versus 2 (2 away from 0) and 1: 6.
  assert list(_build("coreset", normalize=False).query(pool, 2, KEY)) == [3, 4]
  # Cold start: first the point farthest from the mean (3.8): 10.0; then the farthest from it.
  cold = Pool(labelled=np.zeros(5, bool), features=features)
  assert list(_build("coreset", normalize=False).query(cold, 2, KEY)) == [3, 0]


def test_badge_gradient_embedding_and_its_first_center():
  probs = jnp.array([[0.7, 0.2, 0.1], [0.34, 0.33, 0.33], [0.98, 0.01, 0.01]])
  features = jnp.array([[1.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
  g = badge.gradient_embedding(probs, features)
  # a = p - e_yhat = [-0.3, 0.2, 0.1]; g = a (x) h = [-0.3, -0.6, 0.2, 0.4, 0.1, 0.2].
  np.testing.assert_allclose(g[0], [-0.3, -0.6, 0.2, 0.4, 0.1, 0.2], atol=1e-6)
  norms = np.sum(np.asarray(g) ** 2, -1)
  pool = Pool(labelled=np.zeros(3, bool), probs=probs, features=features)
  chosen = _build("badge").query(pool, 2, KEY)
  assert chosen[0] == int(np.argmax(norms))  # the longest gradient first
  # The factorized distances equal the explicit ones (k-means++ weights).
  explicit = np.sum((np.asarray(g)[:, None] - np.asarray(g)[None]) ** 2, -1)
  a = np.asarray(probs) - np.eye(3)[np.argmax(probs, -1)]
  factorized = (
    norms[:, None] + norms[None] - 2 * (a @ a.T) * (np.asarray(features) @ np.asarray(features).T)
  )
  np.testing.assert_allclose(factorized, explicit, atol=1e-5)


def test_typicality_is_the_inverse_mean_distance_to_the_nearest_neighbours():
  members = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
  # Point 0: nearest two at 1 and 1 -> 1 / 1; point 1: at 1 and sqrt(2); point 3: its two
  # nearest are (0,1) at sqrt(18) and (1,0) at sqrt(20) ((0,0) is 5 away).
  expected = [
    1.0,
    1 / ((1 + math.sqrt(2)) / 2),
    1 / ((1 + math.sqrt(2)) / 2),
    1 / ((math.sqrt(18) + math.sqrt(20)) / 2),
  ]
  np.testing.assert_allclose(typiclust.typicality(members, 2), expected, rtol=1e-5)


def _blobs(key, sizes, angles, spread=0.05):
  """Points on the unit circle around the given angles (normalizing keeps them there)."""
  points, centers = [], []
  for k, (size, angle) in enumerate(zip(sizes, angles)):
    offsets = spread * np.asarray(jax.random.normal(jax.random.fold_in(key, k), (size,)))
    offsets[0] = 0.0  # the blob's own center is its first point
    centers.append(sum(sizes[:k]))
    points += [[math.cos(angle + o), math.sin(angle + o)] for o in offsets]
  return np.asarray(points, np.float32), centers


def test_typiclust_takes_the_most_typical_point_of_each_uncovered_cluster():
  features, centers = _blobs(jax.random.key(1), (30, 20, 10), (0.0, 2.0, 4.0))
  pool = Pool(labelled=np.zeros(len(features), bool), features=features)
  chosen = _build("typiclust", k_neighbours=5).query(pool, 3, KEY)
  blob_of = np.repeat([0, 1, 2], (30, 20, 10))
  assert list(blob_of[chosen]) == [0, 1, 2]  # largest cluster first, one per cluster
  for pick, blob in zip(chosen, blob_of[chosen]):
    members = np.flatnonzero(blob_of == blob)
    scores = typiclust.typicality(geometry.normalize(features)[members], 5)  # as it sees them
    assert pick == members[np.argmax(scores)]
  # With a label in the biggest cluster, the first choice moves to the next one.
  labelled = np.zeros(len(features), bool)
  labelled[5] = True
  again = _build("typiclust", k_neighbours=5).query(
    Pool(labelled=labelled, features=features), 2, KEY
  )
  assert list(blob_of[again]) == [1, 2]


def test_probcover_greedy_cover_of_delta_balls():
  # Three groups along the circle: 6 points within 0.1 rad, 3 points, 1 point, far apart.
  angles = [0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 2.0, 2.04, 2.08, 4.0]
  features = np.array([[math.cos(a), math.sin(a)] for a in angles], np.float32)
  pool = Pool(labelled=np.zeros(10, bool), features=features)
  strategy = _build("probcover", radius=0.07, projection_dim=0)
  chosen = strategy.query(pool, 3, KEY)
  # Chord length ~ angle: a ball of 0.07 around 0.04 holds 0.0..0.1 minus nothing beyond 0.07
  # away: {0.0?..}: 0.04 covers 0.0 (0.04), 0.02, 0.06, 0.08, 0.1 (0.06) -> 6 points, the most.
  assert chosen[0] == 2
  assert chosen[1] == 7  # 2.04 covers all three of its group (2.0 and 2.08 only two)
  assert chosen[2] == 9
  # Already covered by a label: the group is skipped.
  labelled = np.zeros(10, bool)
  labelled[3] = True
  assert (
    _build("probcover", radius=0.07, projection_dim=0).query(
      Pool(labelled=labelled, features=features), 1, KEY
    )[0]
    == 7
  )


def test_probcover_radius_by_purity_keeps_balls_inside_clusters():
  features, _ = _blobs(jax.random.key(2), (40, 40), (0.0, 2.5), spread=0.05)
  strategy = _build("probcover", purity_clusters=2, projection_dim=0)
  strategy.query(Pool(labelled=np.zeros(80, bool), features=features), 2, KEY)
  # The blobs are ~2.5 rad (chord 1.9) apart: every candidate radius below that is pure.
  assert 1.0 <= strategy.chosen_radius <= 1.5


def test_probcover_cell_search_finds_the_exact_ball_graph_on_clustered_features():
  # 8 tight groups of 40 on the unit sphere in 16 dimensions: the triangle inequality rules
  # out every other group's cells, so the cell search (forced by exact_limit=50) must return
  # exactly the all-pairs graph.
  keys = jax.random.split(jax.random.key(3), 2)
  directions = np.asarray(geometry.normalize(jax.random.normal(keys[0], (8, 16))))
  noise = 0.03 * np.asarray(jax.random.normal(keys[1], (8, 40, 16)))
  points = np.asarray(geometry.normalize((directions[:, None] + noise).reshape(-1, 16)))
  exact = probcover.ball_edges(points, 0.1, exact_limit=10**6)
  cells = probcover.ball_edges(points, 0.1, exact_limit=50, probe_cells=4)
  assert len(exact[0]) > len(points)  # more than the self-pairs
  np.testing.assert_array_equal(cells[0], exact[0])
  np.testing.assert_array_equal(cells[1], exact[1])


def _random_pool(n=200, d=8, classes=4, samples=5, labelled=20):
  keys = jax.random.split(jax.random.key(7), 4)
  features = np.asarray(jax.random.normal(keys[0], (n, d)))
  logits = np.asarray(jax.random.normal(keys[1], (samples, n, classes)))
  mc = np.asarray(jax.nn.softmax(logits, -1))
  mask = np.zeros(n, bool)
  mask[np.asarray(jax.random.permutation(keys[2], n))[:labelled]] = True
  labels = np.asarray(jax.random.randint(keys[3], (n,), 0, classes))
  return Pool(labelled=mask, features=features, probs=mc.mean(0), mc_probs=mc, labels=labels)


@pytest.mark.parametrize("name", QUERY_STRATEGIES.names())
def test_every_strategy_keeps_the_contract(name):
  pool = _random_pool()
  strategy = _build(name)
  first = strategy.query(pool, 15, jax.random.key(11))
  assert len(first) == 15 == len(set(first.tolist()))
  assert not pool.labelled[first].any()
  np.testing.assert_array_equal(first, strategy.query(pool, 15, jax.random.key(11)))
  with pytest.raises(ConfigError, match="the budget must be between 1 and that"):
    strategy.query(pool, pool.num_unlabelled + 1, KEY)
  # Everything left: still distinct and unlabelled.
  everything = strategy.query(pool, pool.num_unlabelled, KEY)
  assert sorted(everything.tolist()) == np.flatnonzero(~pool.labelled).tolist()


def test_a_strategy_that_needs_a_model_cannot_cold_start():
  pool = Pool(labelled=np.zeros(10, bool), features=np.ones((10, 2)))
  assert QUERY_STRATEGIES.get("typiclust").cold_start()
  assert not QUERY_STRATEGIES.get("entropy").cold_start()
  with pytest.raises(ConfigError, match=r"needs the pool's \['probs'\].*cold start"):
    _build("entropy").query(pool, 2, KEY)


def test_stratified_random_balances_the_classes_counting_the_labelled():
  labels = np.repeat([0, 1, 2], [50, 30, 20])
  labelled = np.zeros(100, bool)
  labelled[:4] = True  # four labels of class 0 already
  pool = Pool(labelled=labelled, labels=labels)
  chosen = _build("stratified_random").query(pool, 11, KEY)
  counts = np.bincount(labels[chosen], minlength=3) + np.bincount(labels[labelled], minlength=3)
  assert list(counts) == [5, 5, 5]

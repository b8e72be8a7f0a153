"""Few-label training sets: which examples are kept, how they fill batches, and the paired
layout semi-supervised runs read."""

import numpy as np
import pytest

from ssl_jax.data.digits import digits
from ssl_jax.data.label_budget import apply_label_budget, labelled_indices
from ssl_jax.evals.context import labelled_subsets
from ssl_jax.registry import ConfigError


@pytest.fixture(scope="module")
def data():
  return digits()


def test_budget_keeps_k_per_class_repeated_to_the_full_size(data):
  train = data.split("train")
  budget = apply_label_budget(data, per_class=5, draw=2)
  rows = budget.split("train")
  assert len(rows["label"]) == len(train["label"]) == 1257
  distinct = np.unique(rows["image"].reshape(1257, -1), axis=0)
  assert len(distinct) == 50 and budget.info["labelled_examples"] == 50
  # Each kept example appears 1257 // 50 = 25 or 26 times; each class 125 or 126 times.
  _, counts = np.unique(rows["image"].reshape(1257, -1), axis=0, return_counts=True)
  assert set(counts) == {25, 26}
  assert set(np.bincount(rows["label"])) <= {125, 126, 127, 128}
  # The kept examples are those the probes use at this budget and draw.
  kept = labelled_indices(train["label"], 5, 2, seed=0)
  np.testing.assert_array_equal(np.flatnonzero(labelled_subsets(train["label"], 5, 3, 0)[2]), kept)
  np.testing.assert_array_equal(
    np.unique(rows["image"].reshape(1257, -1), axis=0),
    np.unique(train["image"][kept].reshape(50, -1), axis=0),
  )
  # Other splits are untouched; another draw is another subset.
  assert budget.split("test") is data.split("test")
  assert not np.array_equal(kept, labelled_indices(train["label"], 5, 3, seed=0))


def test_paired_rows_carry_every_image_and_one_labelled_one(data):
  train = data.split("train")
  rows = apply_label_budget(data, per_class=1, draw=0, unlabelled="pair").split("train")
  assert sorted(rows) == ["image", "label", "labelled_image"]
  np.testing.assert_array_equal(rows["image"], train["image"])  # every image, unlabelled
  kept = labelled_indices(train["label"], 1, 0, seed=0)
  assert len(np.unique(rows["labelled_image"].reshape(1257, -1), axis=0)) == 10
  # The label belongs to the labelled image beside it, not to the unlabelled one.
  by_image = {train["image"][i].tobytes(): train["label"][i] for i in kept}
  assert all(
    by_image[image.tobytes()] == label
    for image, label in zip(rows["labelled_image"], rows["label"])
  )


def test_all_labels_and_drop_is_the_dataset_itself(data):
  assert apply_label_budget(data, 0, 0, "drop") is data


def test_budget_errors_name_the_problem(data):
  with pytest.raises(ConfigError, match=r"class \d has only \d+ labelled"):
    apply_label_budget(data, per_class=500)
  with pytest.raises(ConfigError, match=r"unlabelled 'keep'; valid: \['drop', 'pair'\]"):
    apply_label_budget(data, per_class=1, unlabelled="keep")


def test_named_indices_with_an_annotators_labels(data):
  train = data.split("train")
  indices, answers = [17, 3, 250], [4, 0, 9]
  budget = apply_label_budget(data, indices=indices, labels=answers)
  rows = budget.split("train")
  assert len(rows["label"]) == 1257 and budget.info["labelled_examples"] == 3
  # Every row is one of the three images, carrying the annotator's label for it.
  flat = train["image"].reshape(1257, -1)
  for image, label in zip(rows["image"][:30].reshape(30, -1), rows["label"][:30]):
    (source,) = [i for i in indices if np.array_equal(flat[i], image)]
    assert label == answers[indices.index(source)]
  # Without labels, the split's own.
  own = apply_label_budget(data, indices=indices).split("train")
  assert set(own["label"]) == {int(train["label"][i]) for i in indices}
  paired = apply_label_budget(data, indices=indices, labels=answers, unlabelled="pair")
  assert set(paired.split("train")["label"]) == set(answers)


@pytest.mark.parametrize(
  "indices, labels, message",
  [
    ([1, 1257], (), "holds 1257, outside the 1257"),
    ([-1], (), "holds -1"),
    ([4, 4], (), "twice"),
    ([1, 2], [3], "1 labels for 2 indices"),
    ([1, 2], [3, 10], r"\[0, 10\); got 10"),
  ],
)
def test_named_indices_errors(data, indices, labels, message):
  with pytest.raises(ConfigError, match=message):
    apply_label_budget(data, indices=indices, labels=labels)

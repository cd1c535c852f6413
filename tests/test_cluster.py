"""Clustering methods on well-separated blobs, the rules that choose k, and assignment of new points."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.cluster import choose_k, cluster_documents


def _blobs(per=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:3] * 5
    x = np.concatenate([c + rng.normal(scale=0.3, size=(per, 8)) for c in centres])
    truth = np.repeat(np.arange(3), per)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth


def _same_partition(a, b):
    return {tuple(np.flatnonzero(a == c)) for c in set(a.tolist())} == \
        {tuple(np.flatnonzero(b == c)) for c in set(b.tolist())}


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "gmm"])
def test_methods_recover_separated_blobs(method):
    x, truth = _blobs()
    clustering = cluster_documents(x, method, 3, seed=0)
    assert clustering.k == 3 and len(clustering.labels) == len(x)
    assert _same_partition(clustering.labels, truth)
    # a new point near blob 1 joins blob 1's cluster; its nearest centroids start with that cluster
    point = np.eye(8, dtype=np.float32)[1]
    own = clustering.assign(point[None])[0]
    assert own == clustering.labels[truth == 1][0]
    assert clustering.nearest(point, 2)[0] == own and len(clustering.nearest(point, 2)) == 2
    again = cluster_documents(x, method, 3, seed=0)
    assert np.array_equal(again.labels, clustering.labels)  # same seed, same clusters
    assert clustering.summary()["k"] == 3


def test_agglomerative_fitted_on_a_sample_assigns_the_rest():
    x, truth = _blobs(per=30)
    clustering = cluster_documents(x, "agglomerative", 3, seed=0, fit_sample=30)
    assert _same_partition(clustering.labels, truth)


def test_choose_k_rules():
    x, _ = _blobs(per=30)  # 90 points: sqrt -> 9
    assert choose_k(x, "sqrt") == 9
    k = choose_k(x, "silhouette", seed=0)
    assert k in (4, 9, 18) and k == choose_k(x, "silhouette", seed=0)
    with pytest.raises(ValueError, match="cluster rule"):
        choose_k(x, "elbow")


def test_bad_cluster_requests_are_explained():
    x, _ = _blobs(per=2)
    with pytest.raises(ValueError, match="cannot make 10 clusters of 6 documents"):
        cluster_documents(x, "kmeans", 10)
    with pytest.raises(ValueError, match="Unknown clustering"):
        cluster_documents(x, "dbscan", 2)

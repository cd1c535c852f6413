"""Clusters of the corpus in the ensemble's fused dense space, so negatives can be drawn by cluster.

K-means (FAISS), agglomerative (Ward) and Gaussian mixture (scikit-learn) behind one result type. Agglomerative
and mixture models are fitted on a seeded sample (their cost grows with its square or with the dimension) and
every other document joins the nearest cluster, so a large corpus only pays for the sample.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

Method = Literal["kmeans", "agglomerative", "gmm"]
Rule = Literal["sqrt", "silhouette"]


@dataclass(frozen=True)
class Clustering:
    """Each document's cluster and each cluster's unit mean direction."""

    method: str
    labels: np.ndarray      # (n_docs,) cluster of each document
    centroids: np.ndarray   # (k, dim) unit vectors
    model: object | None = None  # a fitted GaussianMixture assigns new points itself

    @property
    def k(self) -> int:
        return len(self.centroids)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """Cluster of each row: the mixture's most likely component, otherwise the nearest centroid (cosine;
        ties go to the lower cluster id)."""
        if self.model is not None:
            return self.model.predict(np.asarray(vectors, dtype=np.float64))
        return np.argmax(np.asarray(vectors, dtype=np.float32) @ self.centroids.T, axis=1)

    def nearest(self, vector: np.ndarray, n: int) -> np.ndarray:
        """The ``n`` clusters whose centroids are most similar to ``vector``, best first, ties by id."""
        sims = self.centroids @ np.asarray(vector, dtype=np.float32)
        return np.lexsort((np.arange(self.k), -sims))[:n]

    def summary(self) -> dict:
        sizes = np.bincount(self.labels, minlength=self.k)
        return {"method": self.method, "k": self.k, "empty": int((sizes == 0).sum()),
                "size_min": int(sizes.min()), "size_median": float(np.median(sizes)), "size_max": int(sizes.max())}


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)) if n > size else np.arange(n)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False,
                      max_points_per_centroid=10_000)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one thread: the same sums in the same order, so the same seed gives the same clusters
    try:
        km.train(x)
    finally:
        faiss.omp_set_num_threads(threads)
    return _unit(km.centroids)


def choose_k(vectors: np.ndarray, rule: Rule = "sqrt", seed: int = 0, sample: int = 2000) -> int:
    """Number of clusters: round(sqrt(N)), or the k among sqrt(N)/2, sqrt(N), 2*sqrt(N) whose k-means clustering
    of a seeded sample has the best cosine silhouette (ties: the smaller k)."""
    n = len(vectors)
    if n < 2:
        raise ValueError(f"cannot cluster {n} document(s)")
    base = max(2, round(math.sqrt(n)))
    if rule == "sqrt":
        return min(base, n)
    if rule != "silhouette":
        raise ValueError(f"Unknown cluster rule {rule!r}: choose sqrt or silhouette.")
    from sklearn.metrics import silhouette_score

    x = np.ascontiguousarray(vectors[_sample(n, sample, seed)], dtype=np.float32)
    best: tuple[float, int] | None = None
    for k in sorted({max(2, base // 2), base, 2 * base}):
        if k >= len(x):
            continue
        labels = np.argmax(x @ _kmeans(x, k, seed).T, axis=1)
        score = silhouette_score(x, labels, metric="cosine") if len(set(labels.tolist())) > 1 else -1.0
        logger.info("silhouette of k=%d: %.4f", k, score)
        if best is None or score > best[0]:
            best = (float(score), k)
    return best[1] if best else min(base, n)


def cluster_documents(vectors: np.ndarray, method: Method, k: int, seed: int = 0,
                      fit_sample: int = 10_000) -> Clustering:
    """Cluster the rows of ``vectors`` (unit vectors) into ``k`` clusters with ``method``."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if not 2 <= k <= n:
        raise ValueError(f"cannot make {k} clusters of {n} documents (need 2 <= k <= documents)")
    if method == "kmeans":
        centroids = _kmeans(x, k, seed)
        return Clustering(method, np.argmax(x @ centroids.T, axis=1), centroids)
    sample = _sample(n, fit_sample, seed)
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        fitted = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x[sample])
        centroids = _unit(np.stack([x[sample][fitted == c].mean(axis=0) for c in range(k)]))
        labels = np.argmax(x @ centroids.T, axis=1)
        labels[sample] = fitted  # the documents it was fitted on keep their tree's clusters
        return Clustering(method, labels, centroids)
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        # Diagonal covariances: a full one per component would need k * dim^2 parameters.
        gmm = GaussianMixture(k, covariance_type="diag", reg_covar=1e-4, random_state=seed, max_iter=100)
        gmm.fit(x[sample].astype(np.float64))
        labels = gmm.predict(x.astype(np.float64))
        return Clustering(method, labels, _unit(gmm.means_), gmm)
    raise ValueError(f"Unknown clustering {method!r}: choose kmeans, agglomerative or gmm.")

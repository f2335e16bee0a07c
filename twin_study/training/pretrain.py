"""Pre-trained item embeddings for SIM Soft and SIM Cluster.

TWIN does not say how its SIM baselines' embeddings were pre-trained (SIM itself learns them
with an auxiliary CTR loss on the long sequence). Our documented choice: train a DIN model (the
same CTR model with attention over the most recent k behaviours) on the same training split and
take its learned item-id embeddings; SIM Cluster runs k-means on those vectors.
"""

from __future__ import annotations

import numpy as np


def kmeans_codes(vectors: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Cluster id per item (row 0, the padding item, gets its own code 0; others 1..n)."""
    from sklearn.cluster import KMeans

    x = np.asarray(vectors, dtype=np.float32)[1:]
    n_clusters = min(n_clusters, len(x))
    km = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed, max_iter=50).fit(x)
    return np.concatenate([[0], km.labels_ + 1]).astype(np.int64)

"""What SIM Soft and SIM Cluster get from a pre-trained model: item vectors and k-means codes.

TWIN does not say how its SIM baselines' vectors were pre-trained (SIM itself learns them with
an auxiliary CTR loss on the long sequence). Our documented choice: train a DIN model (the same
CTR model with attention over the most recent k behaviours) on the same training split with the
sweep's TrainConfig, and take its K_h of every item (``ModelConfig.sim_vectors = "inherent"``:
id + author + category + ... embeddings, the features TWIN's keys see). The item-id embedding
alone (``"item_id"``, the first choice) barely moves from its N(0, 1) init in a short run, so
retrieval by it was near random. SIM Cluster runs k-means on the same vectors (``kmeans_codes``,
once per run in its prerequisite's ``provide``: a model constructor runs no k-means).
``analysis.retrieval.vector_separation`` reports how well a table separates authors and
categories.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The DIN that pre-trains SIM's vectors is this run's config with ``long_module="din"`` and
# these fields (which DIN does not read) reset to their defaults, so that every SIM variant
# (and a sweep's own DIN row) shares one pre-training run.
DIN_RESET = ("n_clusters", "sim_vectors", "hash_input")

def pretrained_vectors(model: Any, source: str = "inherent") -> np.ndarray:
    """(n_items + 1, D) item vectors of a trained model (row 0 = padding), as SIM gets them."""
    return model.emb.item_vectors(source).detach().cpu().numpy()


# k-means is fitted on at most this many item vectors (a seeded sample), then every item is
# assigned to its nearest centre. The study's worlds (<= 20,000 items) fit on all of them, as
# before; a catalogue of 10^6-10^7 items would otherwise spend minutes to hours per run on the
# fit alone (issue 27), and a sample this size places 100-1,000 centres as well.
KMEANS_FIT_MAX = 200_000


def kmeans_codes(
    vectors: np.ndarray, n_clusters: int, seed: int, fit_max: int = KMEANS_FIT_MAX
) -> np.ndarray:
    """Cluster id per item (row 0, the padding item, gets its own code 0; others 1..n).
    Once per run, never per step."""
    from sklearn.cluster import KMeans  # lazy: sklearn is heavy; only SIM Cluster needs it

    x = np.asarray(vectors, dtype=np.float32)[1:]
    n_clusters = min(n_clusters, len(x))
    km = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed, max_iter=50)
    if len(x) <= fit_max:
        labels = km.fit(x).labels_
    else:
        rows = np.random.default_rng(seed).choice(len(x), fit_max, replace=False)
        km.fit(x[np.sort(rows)])
        step = 1 << 20  # assign in blocks: a bounded distance matrix
        labels = np.concatenate([km.predict(x[i : i + step]) for i in range(0, len(x), step)])
    return np.concatenate([[0], labels + 1]).astype(np.int64)

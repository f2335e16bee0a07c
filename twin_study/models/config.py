"""Typed configuration of every CTR model in the study.

One ``ModelConfig`` builds any of the paper's models; ``long_module`` picks the lifelong
branch (one of ``models.registry.names()``), everything else (embeddings, short-term branch,
other features, MLP) is shared, as in the paper's protocol (§4.3: only the lifelong module
differs).

The built-in modules' own settings (``eta_bits``, ``n_clusters``, ``sim_vectors``, ...) stay
flat fields here, so that existing cache keys and notebook parameters keep their meaning; each
module names the ones it reads (``LifelongModule.fields``). A new module declares its settings
as a dataclass of its own and takes them from ``options`` (``registry.options_of``): adding a
module adds no field here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import registry

# What a per-item vector can be built from (``FeatureEmbedder.item_vectors``): the source of
# SIM Soft / Cluster's pre-trained vectors (``ModelConfig.sim_vectors``) and of what ETA / SDIM
# hash (``ModelConfig.hash_input``).
ITEM_VECTOR_SOURCES = {
    "inherent": "K_h: item id + every item-table feature (author, category, ...), as TWIN's keys",
    "item_id": "the item-id embedding alone (the study's first baselines)",
}

@dataclass
class ModelConfig:
    long_module: str = "twin"  # one of registry.names()
    long_len: int = 10_000  # L: behaviours the GSU reads (most recent first)
    short_len: int = 50  # behaviours of the short-term branch (paper: 50)
    k: int = 100  # GSU output size (paper: 100)
    heads: int = 4  # attention heads (paper: 4)
    d_k: int = 16  # query/key size per head (not stated in the paper)
    d_v: int = 16  # value size per head (not stated)
    d_out: int = 64  # size after W^o (not stated)
    id_dim: int = 64  # embedding size of id features with a large vocabulary (paper: 64)
    small_dim: int = 8  # embedding size of every other feature (paper: 8)
    large_vocab: int = 1000  # a feature with more codes than this counts as a large-vocab id
    # Embedding init N(0, std^2). Not stated in the paper. Tiny embeddings (0.05) make every
    # attention logit ~0.01: the ESU starts as a uniform average and barely learns to focus;
    # notebook 03's tuning section preferred 0.3 to 1.0 for every model it tried.
    emb_init_std: float = 0.3
    shared_qk_init: bool = True  # initialise W^q = W^h (see attention.py); False = independent
    # W^q (= W^h) at init times this (attention.py); not stated. 3: notebook 03's tuning
    # section preferred it to 1 for every model it tried (validation LogLoss, same budget).
    qk_init_scale: float = 3.0
    # The cross-bias weights beta at init (Eq. 6); not stated. 0: the bias starts silent and
    # grows as W^c learns which codes matter (chosen in notebook 03's tuning section).
    beta_init: float = 0.0
    mlp: tuple[int, ...] = (200, 80)  # hidden sizes of the MLP mixer (not stated)
    # Also feed the MLP the element-wise products of each interest vector with a projection
    # of the target (not stated in the paper; without it a ReLU MLP must learn to compare two
    # 64-d vectors from few samples, and every long-term module looks alike).
    mlp_interaction: bool = True
    merge: str = "round_robin"  # CP-GSU: walk the heads' ranked lists in turn (paper §4.3)
    cache_refresh: int = 0  # rebuild the K_h W^h item cache every N training steps; 0 = always
    gsu_chunk: int = 2048  # behaviours scored per chunk (bounds memory at L = 10^4..10^5)
    # How the same maths is computed. "fast": GSUs select one request at a time, scoring only
    # its valid behaviours, with a filtered top-k (models/topk.py), and attention projects the
    # query and the attention-pooled K instead of every finalist (attention.py). "reference":
    # the literal order -- the whole (B, heads, L) score table, torch.topk, per-finalist
    # projections. Same selections and outputs up to float rounding (tests check it).
    impl: str = "fast"
    eta_bits: int = 32  # ETA: SimHash bits m
    sdim_bits: int = 48  # SDIM: hash bits m (paper's production: 48)
    sdim_tau: int = 3  # SDIM: bits per signature tau (paper's production: 3)
    n_clusters: int = 100  # SIM Cluster: k-means clusters (Cluster vs Cluster+ = two settings)
    hash_seed: int = 1234  # fixed random projections for ETA / SDIM (never redrawn)
    extra: dict = field(default_factory=dict)  # free-form notes carried into results
    # Issue 10, fair baselines (each one of ITEM_VECTOR_SOURCES):
    # SIM Soft / Cluster's vectors from the pre-trained DIN: "inherent" = its K_h of every item
    # (id + author + category + ... embeddings, what TWIN's keys see); "item_id" = the id
    # embedding alone (the old choice: barely moved from its init, near-random retrieval).
    sim_vectors: str = "inherent"
    # What ETA / SDIM hash: "inherent" = K_h, the features TWIN's keys see (so only the
    # retrieval method differs); "item_id" = the item-id embedding alone (the old choice).
    hash_input: str = "inherent"
    # A registered module's own settings (its ``LifelongModule.options`` dataclass), by name;
    # empty for the built-in modules, whose settings are the flat fields above.
    options: dict = field(default_factory=dict)

    def validate(self) -> ModelConfig:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"ModelConfig: {msg}")

        need(
            self.long_module in registry.names(),
            f"unknown long_module {self.long_module!r}; choose one of {sorted(registry.names())}",
        )
        need(isinstance(self.options, dict), f"options must be a dict, got {self.options!r}")
        need(self.long_len >= 1, f"long_len must be >= 1, got {self.long_len}")
        need(self.k >= 1, f"k must be >= 1, got {self.k}")
        need(
            self.k <= self.long_len,
            f"k = {self.k} > long_len = {self.long_len}: the GSU cannot keep more behaviours "
            "than it reads; lower k or raise long_len",
        )
        need(self.heads >= 1 and self.d_k >= 1 and self.d_v >= 1, "heads, d_k, d_v must be >= 1")
        need(self.merge in ("round_robin",), f"unknown merge {self.merge!r}")
        need(self.cache_refresh >= 0, "cache_refresh must be >= 0")
        need(self.gsu_chunk >= 1, "gsu_chunk must be >= 1")
        need(
            self.impl in ("fast", "reference"),
            f"unknown impl {self.impl!r}; choose 'fast' or 'reference'",
        )
        need(self.sdim_bits % self.sdim_tau == 0, "sdim_bits must be a multiple of sdim_tau")
        need(self.n_clusters >= 2, "n_clusters must be >= 2")
        for name in ("sim_vectors", "hash_input"):
            need(
                getattr(self, name) in ITEM_VECTOR_SOURCES,
                f"unknown {name} {getattr(self, name)!r}; choose one of "
                f"{sorted(ITEM_VECTOR_SOURCES)}",
            )
        registry.options_of(self)  # an option its module does not declare is an error
        return self

    def to_dict(self) -> dict:
        return asdict(self)

"""The paper's numbers, in one place: every value this study quotes from the paper.

Chang et al., "TWIN: TWo-stage Interest Network for Lifelong User Behavior Modeling in CTR
Prediction at Kuaishou", KDD 2023 (arXiv 2302.02352). These are the PAPER'S reported values,
not results of this study; each names where in the paper it stands. The analyses, claims,
figures and notebooks read them from here. Plain Python (no pandas): ``analysis.sweeps`` turns
Table 4 into a data frame.
"""

from __future__ import annotations

# --- Table 4: the offline comparison -------------------------------------------------------

# Table 4: mean over 5 days of the Kuaishou offline data.
# Columns: our label, long_module, AUC, GAUC; rows in the paper's order (SIM Cluster and
# SIM Cluster+ share a module and differ in their number of clusters).
TABLE4_COLUMNS = ("model", "long_module", "auc", "gauc")
TABLE4 = (
    ("Avg-Pooling", "avg_pool", 0.7855, 0.7168),
    ("DIN", "din", 0.7873, 0.7191),
    ("SIM Hard", "sim_hard", 0.7901, 0.7224),
    ("ETA", "eta", 0.7910, 0.7243),
    ("SIM Cluster", "sim_cluster", 0.7915, 0.7253),
    ("SDIM", "sdim", 0.7919, 0.7267),
    ("SIM Cluster+", "sim_cluster", 0.7927, 0.7275),
    ("SIM Soft", "sim_soft", 0.7939, 0.7299),
    ("TWIN", "twin", 0.7962, 0.7336),
)
TABLE4_ORDER = tuple(row[0] for row in TABLE4)  # weakest to strongest, as the paper lists them

# Table 4 as the paper's text reads it: TWIN's gain over the strongest baseline, SIM Soft, in
# percent of SIM Soft's value (relative).
TWIN_OVER_SIM_SOFT_PCT = {"auc": 0.29, "gauc": 0.51}

# Table 4 as the paper's text reads it: finer retrieval helps monotonically.
FINER_RETRIEVAL = ("SIM Hard", "SIM Cluster", "SIM Cluster+", "SIM Soft", "TWIN")

# --- Fig. 4: consistency of GSU and ESU ------------------------------------------------------

# Fig. 4 at GSU output size 100 (hits in the real top-100, L = 10^4), quoted in §4.4.
FIG4_HITS = {"sim_hard": 40.0, "twin": 94.0}
# Fig. 4 (§4.4): TWIN's misses at x = 100, blamed on the 15-minute cache delay.
FIG4_TWIN_MISSES = 6.0
CACHE_DELAY_MINUTES = 15  # §4.4: the item cache's refresh delay the misses are blamed on

# --- the cost of scoring: the feature split ---------------------------------------------------

# The feature split's saving: it cuts "the linear projection of K_h with 10^4 rows" by 99.3 %
# (the paper's cost claim, C3 here).
PROJECTION_ROWS = 10_000
PROJECTION_COST_CUT = 0.993

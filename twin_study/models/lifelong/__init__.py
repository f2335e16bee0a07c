"""The study's lifelong modules, one file each, registered in ``models.registry`` on import,
in Table 4's order and then the ablations (the import order below is the registry's order,
hence no sorting). A new module is a new file here, imported below, plus its tests; nothing
else changes."""

# ruff: noqa: I001, F401 -- imported to register, in this order
from . import avg_pool
from . import din
from . import sim_hard
from . import eta
from . import sdim
from . import sdim_linear
from . import sim_cluster
from . import sim_soft
from . import twin
from . import twin_ablations
from . import twin_v2

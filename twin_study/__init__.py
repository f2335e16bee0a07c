"""twin-study: a reproducible Jupyter study of the TWIN CTR model (KDD 2023).

Keep this module light: ``twin-study --version`` and ``twin_study.paths`` must not pay for
importing torch. Import submodules explicitly (``from twin_study import results``).
"""

__version__ = "0.1.0"

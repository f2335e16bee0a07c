"""Analyses the notebooks call: computations live here, notebook cells only call and plot."""

"""Figures of the study, one module per notebook group.

``base``: ``set_style`` and ``savefig`` (byte-stable PNG/PDF/SVG); ``data`` (00),
``complexity`` (01), ``consistency`` (02) and ``results`` (03-05): the plot functions, each
``def plot_x(..., ax=None) -> Figure``.
"""

"""Pure Plotly figure builders (no widgets): charts of curves and profiles, refinement and sweeps.

Used by the panels (``ui/``), the headless runners (``batch/``) and the command line (``cli/``);
a figure built here is a plain ``go.Figure`` that a panel wraps in its chart widget.
"""

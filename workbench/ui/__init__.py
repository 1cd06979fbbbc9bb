"""User interface: ipywidgets panels composing the Workbench app, over typed shared state.

The top of the layers beside the command line: panels import the core and the figure builders in
``plots/``; nothing below ``ui/`` imports it (``tests/test_layers.py`` holds that line).
"""

"""Headless runs: the command line, papermill notebooks, sweeps (imports the core)."""

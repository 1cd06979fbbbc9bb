"""Headless runs: papermill notebooks, parameter sweeps (local or Dask), Optuna searches, the dashboard launcher."""

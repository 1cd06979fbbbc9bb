"""User interface: Plotly figures and ipywidgets panels (imports the core, never the reverse)."""

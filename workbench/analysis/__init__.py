"""Analysis: predictions, metrics in physical units, the NR computed from a predicted profile, refinement."""

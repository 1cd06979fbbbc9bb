"""Storage: model bundles (safetensors + JSON), the SQLite run/model registry, workspaces and the Hugging Face Hub."""

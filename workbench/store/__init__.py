"""Storage: model bundles (safetensors + JSON), and later the run registry and the Hugging Face Hub."""

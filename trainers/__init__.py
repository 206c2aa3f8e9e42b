"""Bundled trainers: the recognition model family from one config, datasets over manifests, the training loop."""

"""Triplet metric-learning model: backbones, EmbeddingNet, losses, miners,
samplers, training and the model bundle.  Imports torch; import lazily."""

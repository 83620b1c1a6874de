"""The lens finder: dataset over the stamp store, safe augmentations, model registry, training loop,
checkpoints, and the frozen-model inference API (``lensaudit.train.infer.load_frozen``)."""

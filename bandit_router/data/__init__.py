"""Data shipped with the package: the model catalog, known models and the demo's sample traffic."""

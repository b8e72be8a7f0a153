"""Figures: a run's curves from metrics.jsonl, an embedding map of its features, and the
experiments' result figures. `python -m ssl_jax.plot W1 [W2 ...] --out fig.png`."""

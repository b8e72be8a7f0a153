"""Results as the docs show them: markdown tables and figures rendered from the experiments'
JSON, and `python -m ssl_jax.report`, which rewrites them in README.md and docs/ (`--check`
fails on a table that no longer matches its JSON)."""

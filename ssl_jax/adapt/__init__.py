"""Turning a pretrained encoder into a downstream skill: LoRA, freezing and layer-wise
learning rates, adversarial attacks, zero-shot scoring and pseudo-labelling. Pure functions
and optax transformations; the `classification` task and the evaluators put them to work."""

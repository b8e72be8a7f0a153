"""A run's files: its record (config.json, the run-defining fingerprint, the resume contract),
the workdir lock, Orbax checkpoints (damaged steps set aside), and the one reader of a finished
run. This package imports neither the config schema nor the data package: what needs the schema
(filling a recorded config's new defaults) is passed in by the trainer."""

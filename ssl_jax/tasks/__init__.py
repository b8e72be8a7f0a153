"""Pretext tasks: each ties a model to its loss and representation, registered in TASKS.

Importing this package registers every task.
"""

from ssl_jax.tasks import mlm, simclr  # noqa: F401  (registration)
from ssl_jax.tasks.base import Task  # noqa: F401

"""Barlow Twins (Zbontar et al., 2021) and VICReg (Bardes et al., 2022): two views, no
negatives, collapse prevented by decorrelating (and, for VICReg, keeping the variance of) the
embedding dimensions over the batch."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from ssl_jax.data.source import Dataset
from ssl_jax.models.heads import MLPHead
from ssl_jax.registry import TASKS
from ssl_jax.tasks.vision import VisionTask


def _off_diagonal(matrix: jnp.ndarray) -> jnp.ndarray:
  return matrix - jnp.diag(jnp.diag(matrix))


def barlow_twins_loss(
  z_1: jnp.ndarray, z_2: jnp.ndarray, lambda_offdiag: float, eps: float = 1e-5
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """sum_i (1 - C_ii)^2 + lambda * sum_{i!=j} C_ij^2 with C the cross-correlation of the
  batch-standardised embeddings. Returns (loss, on-diagonal term, off-diagonal term)."""

  def standardise(z):
    z = z.astype(jnp.float32)
    return (z - z.mean(0)) / jnp.sqrt(z.var(0) + eps)

  c = standardise(z_1).T @ standardise(z_2) / z_1.shape[0]
  on_diag = jnp.sum((1 - jnp.diag(c)) ** 2)
  off_diag = jnp.sum(_off_diagonal(c) ** 2)
  return on_diag + lambda_offdiag * off_diag, on_diag, off_diag


def vicreg_loss(
  z_1: jnp.ndarray,
  z_2: jnp.ndarray,
  sim_coeff: float,
  std_coeff: float,
  cov_coeff: float,
  eps: float = 1e-4,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """sim_coeff * MSE(z1, z2) + std_coeff * hinge(1 - std) + cov_coeff * off-diagonal cov^2 / D,
  the variance and covariance terms summed over both views (the paper's Algorithm 1)."""
  z_1, z_2 = z_1.astype(jnp.float32), z_2.astype(jnp.float32)
  n, dim = z_1.shape
  invariance = jnp.mean((z_1 - z_2) ** 2)

  def variance_term(z):
    return jnp.mean(jnp.maximum(0.0, 1 - jnp.sqrt(z.var(0, ddof=1) + eps)))

  def covariance_term(z):
    z = z - z.mean(0)
    cov = z.T @ z / (n - 1)
    return jnp.sum(_off_diagonal(cov) ** 2) / dim

  variance = variance_term(z_1) + variance_term(z_2)
  covariance = covariance_term(z_1) + covariance_term(z_2)
  loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
  return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}


class _TwoViewProjector(VisionTask):
  """Encoder -> 3-layer projector on each view; subclasses define `pair_loss(z1, z2)`."""

  head_chain = ("projector",)

  def __init__(self, config, dataset, projector_hidden_dim, projector_dim):
    super().__init__(config, dataset)
    self.modules["projector"] = MLPHead(projector_hidden_dim, projector_dim, 3)

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    view_1, view_2 = self.two_views(rng, batch["image"])
    chain = ("encoder", "projector")
    (h_1, z_1), model_state = self.forward(chain, params, model_state, view_1)
    (_, z_2), model_state = self.forward(chain, params, model_state, view_2)
    loss, metrics = self.pair_loss(z_1, z_2)
    loss, metrics = self.with_probe(loss, metrics, params, h_1, batch)
    return loss, (metrics, model_state)


@TASKS.register("barlow_twins")
class BarlowTwins(_TwoViewProjector):
  """Options: lambda_offdiag (0.0051 in the paper), scale_loss (solo-learn uses 0.1 on CIFAR)."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    projector_hidden_dim: int = 2048,
    projector_dim: int = 2048,
    lambda_offdiag: float = 0.0051,
    scale_loss: float = 1.0,
  ):
    super().__init__(config, dataset, projector_hidden_dim, projector_dim)
    self.lambda_offdiag, self.scale_loss = lambda_offdiag, scale_loss

  def pair_loss(self, z_1, z_2):
    loss, on_diag, off_diag = barlow_twins_loss(z_1, z_2, self.lambda_offdiag)
    return self.scale_loss * loss, {"on_diagonal": on_diag, "off_diagonal": off_diag}


@TASKS.register("vicreg")
class VICReg(_TwoViewProjector):
  """Options: sim_coeff / std_coeff / cov_coeff (25 / 25 / 1 in the paper)."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    projector_hidden_dim: int = 2048,
    projector_dim: int = 2048,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
  ):
    super().__init__(config, dataset, projector_hidden_dim, projector_dim)
    self.coeffs = (sim_coeff, std_coeff, cov_coeff)

  def pair_loss(self, z_1, z_2):
    return vicreg_loss(z_1, z_2, *self.coeffs)

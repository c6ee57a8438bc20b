"""T-TAME training loss and the Ψ selection (paper eqs. 11-17) — pure functions.

Layout: Ψ is ``(B, H_e, W_e, k)``: for each of the B images, k sigmoid maps
``sigmoid(c)`` at feature resolution (channels last, like ``c``).

Ψ selection (which k classes per image):

* ``"reference"`` (default, the public implementation): k = B and every image
  gets the maps of the predicted classes of *all* B images,
  ``Ψ[i, ..., j] = A[i, ..., y_j]`` — a B×B set that contains image i's own
  class ``y_i`` at slot i and the B−1 classes predicted for the other images.
* ``"paper"`` (§III-C3): slot 0 is the own class ``y_i``; slots 1..B−1 are
  classes drawn uniformly, with replacement, from the K−1 classes ≠ ``y_i``,
  independently per image, from an explicit ``rng`` (the caller passes a fresh
  key per step, so the draw is reproducible from the training seed).
* ``selection="own"`` (``config.loss.psi_selection``; not the paper's): every slot holds
  the image's own class, ``Ψ[i, ..., j] = A[i, ..., y_i]`` — the diagonal of the B×B
  set, repeated B times so that both variants' terms keep their normalisation. No class
  map is pushed down on the images of other classes.

Loss, reference variant (weights from :class:`~ttame_jax.config.LossConfig`):

    ce   = 1.5 · CE(masked logits, y)                         (mean over images)
    area = 2 · mean((Ψ + 0.0005) ** 0.3)                      (mean over all B·H_e·W_e·k)
    tv   = 0.01 · (Σ Δ_h(Ψ)² + Σ Δ_w(Ψ)² + 0.3 · border(Ψ)) / (2B)

with ``Δ_h`` / ``Δ_w`` the differences of vertically / horizontally adjacent
pixels and ``border(Ψ) = Σ Ψ[:, 0, :]² + Σ Ψ[:, -1, :]² + Σ Ψ[:, :, 0]² +
Σ Ψ[:, :, -1]²`` — the first and last row and the first and last column, each
summed separately, so the four corner pixels count twice (this is what the
reference computes). The paper has no border term; the 2 in ``2B`` is the
exponent of the squares, as in the reference.

Loss, paper variant (eqs. 11, 15-17), with S the number of values summed, B·k·W_e·H_e:

    ce   = λ1 · CE(masked logits, y)
    area = λ2 · E(Ψ),       E(Ψ) = (1/S)  Σ Ψ^λ4
    tv   = λ2·λ3 · V(Ψ),    V(Ψ) = (1/2S) Σ (Δ_h(Ψ)² + Δ_w(Ψ)²)

λ1 = ``ce``, λ2 = ``area``, λ4 = ``area_power`` and λ2·λ3 = ``tv`` (paper:
1.5, 2, 0.005·2 = 0.01, 0.3). The sums run over all k maps of each of the B images (k = B
in the B×B selection), and eqs. 16-17 define S as the number of values summed, so E is the
per-value mean of Ψ^λ4. ``Ψ^λ4`` has no
epsilon; its gradient at Ψ = 0 is taken as 0 (a sigmoid underflows to 0 only
for c < -88, where the true gradient of σ(c)^λ4 is ~0 too).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ttame_jax.config import LossConfig


def psi_classes(
    y: jnp.ndarray,
    variant: str,
    num_classes: int,
    rng: jax.Array | None = None,
    selection: str = "auto",
) -> jnp.ndarray:
    """The classes of Ψ for each image.

    Args:
      y: int ``(B,)`` predicted classes of the unmasked images.
      variant: ``"reference"`` or ``"paper"`` (see module docstring).
      num_classes: K.
      rng: PRNG key, required by ``"paper"``.
      selection: ``"auto"`` (the variant's selection) or ``"own"`` (own class only).

    Returns:
      int ``(B, B)``: row i lists the B classes whose maps of image i enter Ψ.
    """
    b = y.shape[0]
    if selection == "own":
        return jnp.broadcast_to(y[:, None], (b, b))
    if selection != "auto":
        raise ValueError(f"loss.psi_selection must be 'auto' or 'own', got {selection!r}")
    if variant == "reference":
        return jnp.broadcast_to(y[None, :], (b, b))
    if variant == "paper":
        if rng is None:
            raise ValueError(
                "loss.variant='paper' draws B-1 random classes per image: pass rng= (a fresh "
                "jax.random key per step) to loss_fn"
            )
        if num_classes < 2:
            raise ValueError("loss.variant='paper' needs at least 2 classes")
        r = jax.random.randint(rng, (b, b - 1), 0, num_classes - 1, dtype=y.dtype)
        r = r + (r >= y[:, None]).astype(y.dtype)  # skip the own class
        return jnp.concatenate([y[:, None], r], axis=1)
    raise ValueError(f"loss.variant must be 'reference' or 'paper', got {variant!r}")


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Mean softmax cross-entropy of ``logits (B, K)`` against int ``labels (B,)``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def _squared_diffs(psi: jnp.ndarray) -> jnp.ndarray:
    """Σ Δ_h(Ψ)² + Σ Δ_w(Ψ)² over a ``(B, H, W, k)`` array."""
    dh = psi[:, 1:, :, :] - psi[:, :-1, :, :]
    dw = psi[:, :, 1:, :] - psi[:, :, :-1, :]
    return jnp.sum(dh**2) + jnp.sum(dw**2)


def reference_area(psi: jnp.ndarray, power: float, eps: float) -> jnp.ndarray:
    """``mean((Ψ + eps) ** power)`` over all values."""
    return jnp.mean((psi + eps) ** power)


def reference_smoothness(psi: jnp.ndarray, border: float) -> jnp.ndarray:
    """``(Σ Δ_h² + Σ Δ_w² + border · border_sum) / (2B)``, B = ``psi.shape[0]``."""
    edges = (
        jnp.sum(psi[:, 0, :, :] ** 2)
        + jnp.sum(psi[:, -1, :, :] ** 2)
        + jnp.sum(psi[:, :, 0, :] ** 2)
        + jnp.sum(psi[:, :, -1, :] ** 2)
    )
    return (_squared_diffs(psi) + border * edges) / (2.0 * psi.shape[0])


def _pow_zero_safe(x: jnp.ndarray, power: float) -> jnp.ndarray:
    # x**p for x >= 0 with gradient 0 (not inf/NaN) at x == 0: the double-where trick.
    positive = x > 0
    return jnp.where(positive, jnp.where(positive, x, 1.0) ** power, 0.0)


def paper_energy(psi: jnp.ndarray, power: float) -> jnp.ndarray:
    """Eq. 16: ``E(Ψ) = Σ Ψ^power / S``, S = B·H_e·W_e·k, the number of values summed."""
    return jnp.sum(_pow_zero_safe(psi, power)) / psi.size


def paper_variation(psi: jnp.ndarray) -> jnp.ndarray:
    """Eq. 17: ``V(Ψ) = Σ (Δ_h² + Δ_w²) / (2S)``, S = B·H_e·W_e·k (as in eq. 16)."""
    return _squared_diffs(psi) / (2.0 * psi.size)


def ttame_loss(
    masked_logits: jnp.ndarray, y: jnp.ndarray, psi: jnp.ndarray, cfg: LossConfig
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Eq. 11 in the chosen variant.

    Args:
      masked_logits: ``(B, K)`` backbone logits of the masked images.
      y: int ``(B,)`` predicted classes of the unmasked images (model truth).
      psi: ``(B, H_e, W_e, k)`` sigmoid maps Ψ (see :func:`psi_classes`).
      cfg: loss weights and variant.

    Returns:
      ``(loss, {"ce", "area", "tv"})``; the terms are weighted and sum to ``loss``.
    """
    ce = cfg.ce * cross_entropy(masked_logits, y)
    if cfg.variant == "reference":
        area = cfg.area * reference_area(psi, cfg.area_power, cfg.area_eps)
        tv = cfg.tv * reference_smoothness(psi, cfg.border)
    elif cfg.variant == "paper":
        area = cfg.area * paper_energy(psi, cfg.area_power)
        tv = cfg.tv * paper_variation(psi)
    else:
        raise ValueError(f"loss.variant must be 'reference' or 'paper', got {cfg.variant!r}")
    loss = ce + area + tv
    return loss, {"ce": ce, "area": area, "tv": tv}

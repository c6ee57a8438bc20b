"""T-TAME on a frozen backbone: init, the training loss and the eval forward pass.

``build(spec, model_cfg)`` returns a static, hashable :class:`TTAME` (safe to
close over or pass as a static argument to ``jax.jit``). It holds no arrays:
the backbone variables and the attention variables are explicit arguments.

Training step (DESIGN §4) inside :meth:`TTAME.loss_fn`, for a batch ``x`` in [0, 1]:

1. backbone (eval mode, ``stop_gradient`` on its variables) on ``|x|`` ->
   logits and taps; ``y = argmax(logits)`` (model truth, no labels).
   ``config.model.backbone_mode="reference"`` runs both backbone passes with
   ``train=True`` instead (batch statistics, dropout), as the reference code did; the
   running statistics are not updated (docs/evaluation.md).
2. adapter + attention (BatchNorm in train mode) -> pre-sigmoid ``c`` for each
   image's own class ``y_i`` and for the classes of Ψ; ``A = sigmoid(c)``.
3. mask each image with ``up(A_y)`` (eq. 13 or 14), backbone on it -> masked logits.
4. loss (``core/loss.py``).

Only the fusion channels that the loss reads are computed (1 + B per image
instead of K); the loss and its gradient are the same as with all K channels.
"""

from __future__ import annotations

import dataclasses
import inspect

import jax
import jax.numpy as jnp

from ttame_jax.backbones.extract import extract, resolve_taps
from ttame_jax.backbones.registry import BackboneSpec, get_spec
from ttame_jax.backbones.validation import check_input
from ttame_jax.config import LossConfig, ModelConfig, raise_errors
from ttame_jax.core.adapter import adapt
from ttame_jax.core.attention import AttentionMechanism
from ttame_jax.core.loss import psi_classes, ttame_loss
from ttame_jax.core.masking import mask_images, masking_rule, normalize
from ttame_jax.core.precision import backbone_inputs, backbone_module, to_float32


@dataclasses.dataclass(frozen=True)
class TTAME:
    """A T-TAME attention mechanism bound to one backbone (static; no arrays).

    Attributes:
      spec: the backbone's :class:`~ttame_jax.backbones.BackboneSpec`.
      cfg: the frozen ``config.model``.
    """

    spec: BackboneSpec
    cfg: ModelConfig

    @property
    def taps(self) -> tuple[str, ...]:
        """Feature taps (torchvision node names): ``cfg.taps`` or the backbone default."""
        return self.cfg.taps or tuple(self.spec.taps)

    @property
    def backbone(self):
        """The backbone's Flax module (float32, as registered)."""
        return self.spec.builder()

    @property
    def dtype(self) -> str:
        """Compute dtype of T-TAME's backbone passes (``cfg.backbone_dtype``; core/precision.py)."""
        return self.cfg.backbone_dtype

    def _frozen(self, backbone_vars, xn):
        """``(module, variables, input)`` of a frozen backbone pass in :attr:`dtype`."""
        module = backbone_module(self.spec, self.dtype)
        variables, xn = backbone_inputs(
            module, jax.lax.stop_gradient(backbone_vars), xn, self.dtype
        )
        return module, variables, xn

    @property
    def attention(self) -> AttentionMechanism:
        """The attention mechanism's Flax module."""
        return AttentionMechanism(
            num_classes=self.spec.num_classes,
            skip=self.cfg.skip,
            batchnorm=self.cfg.batchnorm,
            branch_act=self.cfg.branch_act,
            max_resolution=self.cfg.max_resolution,
            fusion_init=self.cfg.fusion_init,
        )

    @property
    def masking(self) -> str:
        """``"cnn"`` or ``"vit"``: the masking rule used in training."""
        return masking_rule(self.cfg.masking, self.spec.kind)

    def features(self, backbone_vars, xn: jnp.ndarray, *, train: bool = False, rng=None):
        """Frozen backbone on normalised input.

        Args:
          backbone_vars: the backbone's variables (no gradient flows into them).
          xn: ``(B, S, S, 3)`` images normalised with the backbone's mean/std.
          train: the backbone with ``train=True`` (``backbone_mode="reference"``): BatchNorm
            on batch statistics, dropout on (key ``rng``); the running-statistics updates
            are dropped.
          rng: the dropout key of a ``train`` pass.

        Returns:
          ``(logits (B, K), [L_i (B, H_i, W_i, C_i) for each tap])``.
        """
        check_input(xn, self.spec.name, self.spec.input_size)
        rngs = {"dropout": rng} if train else None
        logits, taps = extract(*self._frozen(backbone_vars, xn), self.taps, train=train, rngs=rngs)
        logits, taps = to_float32(logits, taps, self.dtype, self.spec.name)
        feats = [
            adapt(taps[name], self.spec.kind, name, self.cfg.vit_adapter) for name in self.taps
        ]
        return logits, feats

    def init(self, rng: jax.Array, backbone_vars, x01: jnp.ndarray) -> dict:
        """Initial attention variables ``{"params", "batch_stats"}``.

        Only the shapes of ``x01`` matter (the backbone is traced, not run).
        ``batch_stats`` is ``{}`` when the variant has no BatchNorm.
        """
        xn = normalize(x01, self.spec.mean, self.spec.std)
        shapes = jax.eval_shape(lambda v, x: self.features(v, x)[1], backbone_vars, xn)
        dummy = [jnp.zeros(s.shape, s.dtype) for s in shapes]
        variables = self.attention.init(rng, dummy, train=False)
        return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}

    def forward(self, attn_vars, backbone_vars, x01: jnp.ndarray):
        """Eval-mode pass (BatchNorm running statistics).

        Args:
          attn_vars: ``{"params", "batch_stats"}`` of the attention mechanism.
          backbone_vars: the backbone's variables.
          x01: ``(B, S, S, 3)`` images in [0, 1].

        Returns:
          ``(c, logits)``: pre-sigmoid maps ``(B, H_e, W_e, K)`` and backbone logits ``(B, K)``.
        """
        logits, feats = self.features(backbone_vars, normalize(x01, self.spec.mean, self.spec.std))
        return self.attention.apply(attn_vars, feats, train=False), logits

    def loss_fn(
        self,
        attn_params,
        attn_batch_stats,
        backbone_vars,
        x01,
        loss_cfg,
        rng=None,
        *,
        backbone_train: bool | None = None,
    ):
        """Training loss (pure; differentiate w.r.t. ``attn_params``).

        Args:
          attn_params, attn_batch_stats: the attention variables.
          backbone_vars: frozen backbone variables.
          x01: ``(B, S, S, 3)`` images in [0, 1].
          loss_cfg: ``config.loss``, a :class:`~ttame_jax.config.LossConfig`.
          rng: PRNG key; required for ``loss_cfg.variant == "paper"`` (random Ψ classes);
            also the dropout key of ``backbone_mode="reference"``.
          backbone_train: both backbone passes in train mode (None: as
            ``config.model.backbone_mode`` says; the validation loss passes False).

        Returns:
          ``(loss, (terms, new_attn_batch_stats))`` with ``terms`` =
          ``{"loss", "ce", "area", "tv", "mask_mean"}`` (scalars; the weighted
          ce + area + tv equal loss; mask_mean is the mean of the masks A_y).
        """
        cfg = _typed(loss_cfg, LossConfig, "loss")
        if backbone_train is None:
            backbone_train = self.cfg.backbone_mode == "reference"
        xn = normalize(x01, self.spec.mean, self.spec.std)
        if backbone_train:
            key = jax.random.key(0) if rng is None else rng
            drop_clean, drop_masked = jax.random.fold_in(key, 101), jax.random.fold_in(key, 102)
        else:
            drop_clean = drop_masked = None
        logits, feats = jax.lax.stop_gradient(
            self.features(backbone_vars, xn, train=backbone_train, rng=drop_clean)
        )
        y = jnp.argmax(logits, axis=-1)
        # Channel 0: each image's own class (the mask); channels 1..B: the classes of Ψ.
        psi = psi_classes(y, cfg.variant, self.spec.num_classes, rng, cfg.psi_selection)
        classes = jnp.concatenate([y[:, None], psi], axis=1)
        variables = {"params": attn_params, "batch_stats": attn_batch_stats}
        c, state = self.attention.apply(
            variables, feats, train=True, classes=classes, mutable=["batch_stats"]
        )
        a = jax.nn.sigmoid(c)
        mask, psi = a[..., 0], a[..., 1:]
        x_masked = mask_images(x01, mask, self.masking, self.spec.mean, self.spec.std)
        module, frozen_vars, x_masked = self._frozen(backbone_vars, x_masked)
        if backbone_train:
            masked_logits, _ = module.apply(
                frozen_vars,
                x_masked,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": drop_masked},
            )
        else:
            masked_logits = module.apply(frozen_vars, x_masked)
        masked_logits, _ = to_float32(masked_logits, (), self.dtype, self.spec.name)
        loss, terms = ttame_loss(masked_logits, y, psi, cfg)
        terms = {**terms, "loss": loss, "mask_mean": jnp.mean(mask)}
        return loss, (terms, state.get("batch_stats", {}))


def _typed(cfg, cls, section: str):
    """``cfg`` if it is a valid ``cls``; clear errors otherwise."""
    if not isinstance(cfg, cls):
        raise TypeError(
            f"config.{section} must be a ttame_jax.config.{cls.__name__}, got "
            f"{type(cfg).__name__} (build configs with ttame_jax.configs.load / config.from_dict)"
        )
    raise_errors(cfg.errors())
    return cfg


def build(spec: BackboneSpec | str, model_cfg=None) -> TTAME:
    """Builds the static T-TAME model for a backbone.

    Args:
      spec: a :class:`BackboneSpec` or a registered backbone name.
      model_cfg: ``config.model``, a :class:`~ttame_jax.config.ModelConfig` (None: defaults).

    Raises:
      ValueError: unknown tap names (the message lists the valid ones) or bad config values.
    """
    if isinstance(spec, str):
        spec = get_spec(spec)
    model = TTAME(spec=spec, cfg=_typed(model_cfg or ModelConfig(), ModelConfig, "model"))
    resolve_taps(model.backbone, model.taps)
    if model.cfg.backbone_mode == "reference" and not has_train_mode(model.backbone):
        raise ValueError(
            f"config.model.backbone_mode='reference' needs a backbone whose __call__ takes a "
            f"`train` argument (BatchNorm on batch statistics, dropout); {spec.name} has none "
            f"(it is eval-mode only); use backbone_mode='eval' (docs/evaluation.md)"
        )
    return model


def has_train_mode(module) -> bool:
    """Whether a backbone module's ``__call__`` takes ``train`` (batch statistics, dropout)."""
    return "train" in inspect.signature(type(module).__call__).parameters

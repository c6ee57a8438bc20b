"""The one typed config schema of ttame-jax: every field, its default, its check.

A run is described by a :class:`Config` of frozen sections (``backbone``, ``model``,
``loss``, ``data``, ``train``, ``eval``, ``benchmark``, ``classifier``). Each field has
its default and a one-line comment here, and nowhere else: the experiment files in
:mod:`ttame_jax.configs` (and the repository's ``configs/``) set only what differs from
these defaults. This module imports nothing else from the package (and no JAX/Flax), so a
config loads and checks without any model code, as in big_vision; the typed sections
follow examples/gemma's ``TrainConfig``.

Checks that need no model code (types, ranges, choices, relations between fields) are
here too: :meth:`Config.errors` lists every problem, :meth:`Config.check` raises them all
in one ``ValueError``. Checks that need the backbone registry (backbone name, tap names)
run at start-up in :func:`ttame_jax.training.preflight.validate`, which adds them to the
same list.

Conversions, one place each: :func:`from_dict` (a mapping, ConfigDict or JSON, e.g.
``config.json``; unknown fields are an error naming the close match),
:func:`with_overrides` (``{"train.epochs": 4}`` or command-line strings, parsed by the
field's type) and :func:`to_dict` (what ``config.json`` holds).
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """``config.backbone``: the frozen classifier that is explained."""

    # Registry name: vgg16 | resnet50 | vit_b_16 | synthetic_cnn | synthetic_vit | any
    # backbone registered with ttame_jax.backbones.register.
    name: str = "resnet50"
    # A .pth / .safetensors / timm / .msgpack file, "random" (random init, for tests), or
    # None: torchvision's checkpoint file in the torch hub cache (an error names it if absent).
    weights: str | None = None
    # Seed of the random initialisation when weights == "random".
    seed: int = 0

    def errors(self) -> list[str]:
        return [] if self.name else ["backbone.name must name a registered backbone"]


_MASKING = ("auto", "cnn", "vit")
VIT_ADAPTERS = ("drop-class-token", "class-token-product")
_BRANCH_ACT = ("relu", "sigmoid")
_LOSS_VARIANTS = ("reference", "paper")
PSI_SELECTIONS = ("auto", "own")
FUSION_INITS = ("torch", "zeros")
BACKBONE_MODES = ("eval", "reference")
BACKBONE_DTYPES = ("float32", "bfloat16")
AUGMENT = ("auto", "always", "never")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """``config.model``: the attention mechanism's taps and variant (paper Table 6)."""

    # torchvision node names of the feature taps; () = the backbone's default taps (the
    # paper's s = 3 layers). One name is the one-tap variant (close to L-CAM-Img).
    taps: tuple[str, ...] = ()
    # The skip connection "+ L_i" in each feature branch (Table 6: "no skip").
    skip: bool = True
    # BatchNorm after each branch's 1x1 conv (Table 6: "no skip + no BN").
    batchnorm: bool = True
    # Branch activation: "relu" (paper) | "sigmoid" (Table 6 ablation).
    branch_act: str = "relu"
    # Cap on the explanation map side (H_e, W_e).
    max_resolution: int = 56
    # "auto" (by backbone kind) | "cnn" (eq. 13: normalise(up(A) * x)) | "vit" (eq. 14).
    masking: str = "auto"
    # ViT feature adapter: "drop-class-token" (the paper's) | "class-token-product" (patch
    # tokens times the class token, the reference code's "TTAME" version); CNNs ignore it.
    vit_adapter: str = "drop-class-token"
    # Backbone mode inside the training loss: "eval" (running BatchNorm statistics, no
    # dropout; ours) | "reference" (train=True in both passes, as the reference code ran it:
    # batch statistics, dropout on; every built-in backbone; docs/evaluation.md).
    backbone_mode: str = "eval"
    # Compute dtype of the frozen backbone's passes in training and in explain: "float32" |
    # "bfloat16" (accelerators: its layers compute in bfloat16 from the float32 weights; the
    # taps and logits return to float32, so the attention mechanism and the loss stay
    # float32; metrics score with the float32 backbone; docs/architecture.md).
    backbone_dtype: str = "float32"
    # Initialisation of the fusion 1x1 conv: "torch" (U(±1/√fan_in) for kernel and bias, as
    # the reference trains from; the paper's) | "zeros" (kernel and bias 0: every class map
    # starts flat, with no random sign per class; docs/benchmark.md, "Seed spread").
    fusion_init: str = "torch"

    def errors(self) -> list[str]:
        out = []
        if self.backbone_dtype not in BACKBONE_DTYPES:
            out.append(
                f"config.model.backbone_dtype must be one of {BACKBONE_DTYPES}, "
                f"got {self.backbone_dtype!r}"
            )
        if self.fusion_init not in FUSION_INITS:
            out.append(
                f"config.model.fusion_init must be one of {FUSION_INITS}, got {self.fusion_init!r}"
            )
        if self.backbone_mode not in BACKBONE_MODES:
            out.append(
                f"config.model.backbone_mode must be one of {BACKBONE_MODES}, "
                f"got {self.backbone_mode!r}"
            )
        if self.branch_act not in _BRANCH_ACT:
            out.append(
                f"config.model.branch_act must be one of {_BRANCH_ACT}, got {self.branch_act!r}"
            )
        if self.masking not in _MASKING:
            out.append(f"config.model.masking must be one of {_MASKING}, got {self.masking!r}")
        if not _is_int(self.max_resolution) or self.max_resolution < 1:
            out.append(
                "config.model.max_resolution must be a positive integer, "
                f"got {self.max_resolution!r}"
            )
        if len(set(self.taps)) != len(self.taps):
            out.append(f"config.model.taps has duplicates: {self.taps}")
        if self.vit_adapter not in VIT_ADAPTERS:
            out.append(
                f"config.model.vit_adapter must be one of {VIT_ADAPTERS}, got {self.vit_adapter!r}"
            )
        return out


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """``config.loss``: the training loss (``ttame_jax/core/loss.py``; paper eqs. 15-17)."""

    # "reference" (the public code; default) | "paper" (eqs. 15-17 as printed).
    variant: str = "reference"
    # λ1, weight of the cross-entropy term.
    ce: float = 1.5
    # λ2, weight of the area (energy) term.
    area: float = 2.0
    # Weight of the smoothness term (paper variant: λ2·λ3, i.e. 0.01 for λ3 = 0.005).
    tv: float = 0.01
    # Weight of the border penalty inside the smoothness term (reference only).
    border: float = 0.3
    # λ4, exponent of the area term.
    area_power: float = 0.3
    # Added to Ψ before the power in the area term (reference only).
    area_eps: float = 0.0005
    # Classes of Ψ, the maps the area and smoothness terms push down: "auto" (the variant's:
    # "reference", every image gets the B classes predicted for the batch; "paper", its own
    # class and B-1 random others) | "own" (each image's own class y_i in all B slots, so no
    # class map is pushed down on other classes' images and the terms keep their scale; not
    # the paper's; docs/benchmark.md, "Seed spread").
    psi_selection: str = "auto"

    def errors(self) -> list[str]:
        out = []
        if self.psi_selection not in PSI_SELECTIONS:
            out.append(
                f"config.loss.psi_selection must be one of {PSI_SELECTIONS}, "
                f"got {self.psi_selection!r}"
            )
        if self.variant not in _LOSS_VARIANTS:
            out.append(f"config.loss.variant must be one of {_LOSS_VARIANTS}, got {self.variant!r}")
        for name in ("ce", "area", "tv", "border", "area_eps"):
            if getattr(self, name) < 0:
                out.append(f"config.loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.area_power <= 0:
            out.append(f"config.loss.area_power must be > 0, got {self.area_power}")
        return out


DATA_NAMES = ("imagefolder", "imagenet_tfds", "synthetic")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """``config.data``: where the images come from (docs/data.md)."""

    # "imagefolder" | "imagenet_tfds" | "synthetic" (generated, with ground-truth evidence).
    name: str = "imagefolder"
    # imagefolder: the folder holding train_dir and val_dir.
    root: str | None = None
    # imagefolder: training images, root/train_dir/<wnid>/*.JPEG.
    train_dir: str = "train"
    # imagefolder: the ImageNet validation images, root/val_dir/<wnid>/*.
    val_dir: str = "val"
    # imagefolder: optional list file of the training images (relative to train_dir).
    train_list: str | None = None
    # imagefolder: optional list file of the val split (the paper's Validation_2000.txt).
    val_list: str | None = None
    # imagefolder: optional list file of the test split (the paper's Evaluation_2000.txt).
    test_list: str | None = None
    # imagenet_tfds: TFDS dataset name.
    tfds_name: str = "imagenet2012"
    # imagenet_tfds: TFDS data dir (None: ~/tensorflow_datasets).
    data_dir: str | None = None
    # imagenet_tfds: "pil" (our decoder, bit-identical to torchvision) | "tfds".
    tfds_decoder: str = "pil"
    # Size of the val split: seeded selection of the validation set (synthetic: generated).
    val_size: int = 2000
    # Size of the test split: seeded selection, disjoint from val (synthetic: generated).
    test_size: int = 2000
    # Seed of the val/test selection (not the shuffling seed).
    split_seed: int = 0
    # Decoding threads (None: all cores, at most 32).
    num_workers: int | None = None
    # Batches decoded ahead of the consumer.
    prefetch: int = 2
    # imagefolder, imagenet_tfds (pil): JPEGs >= 2x the resize target decode at 1/2-1/8 scale
    # (PIL draft): faster, pixels differ from torchvision (docs/data.md, Draft decoding).
    jpeg_draft: bool = False
    # synthetic: generated training images.
    train_size: int = 4000
    # synthetic: share of *test* images with two targets of two classes (counterfactuals).
    two_object_fraction: float = 0.25
    # synthetic: fewest clutter objects per image (they carry no class information).
    min_clutter: int = 2
    # synthetic: most clutter objects per image.
    max_clutter: int = 5

    def errors(self) -> list[str]:
        out = []
        if self.name not in DATA_NAMES:
            out.append(f"data.name must be one of {DATA_NAMES}, got {self.name!r}")
        for key, low in (("val_size", 0), ("test_size", 0), ("split_seed", 0), ("prefetch", 1)):
            value = getattr(self, key)
            if not _is_int(value) or value < low:
                out.append(f"data.{key} must be an integer >= {low}, got {value!r}")
        if self.num_workers is not None and (not _is_int(self.num_workers) or self.num_workers < 1):
            out.append(
                f"data.num_workers must be an integer >= 1 (or None), got {self.num_workers!r}"
            )
        if self.name == "imagenet_tfds":
            lists = [k for k in ("train_list", "val_list", "test_list") if getattr(self, k)]
            if lists:
                out.append(
                    f"data.{lists[0]} is only supported with data.name='imagefolder'; with TFDS "
                    "the val/test splits are the seeded selection "
                    "(data.val_size/test_size/split_seed)"
                )
            if self.tfds_decoder not in ("pil", "tfds"):
                out.append(f"data.tfds_decoder must be 'pil' or 'tfds', got {self.tfds_decoder!r}")
        tfds_decodes = self.name == "imagenet_tfds" and self.tfds_decoder == "tfds"
        if self.jpeg_draft and (self.name == "synthetic" or tfds_decodes):
            out.append(
                "data.jpeg_draft applies to our JPEG decoder only (data.name='imagefolder', or "
                f"'imagenet_tfds' with data.tfds_decoder='pil'), not to name={self.name!r}"
                + (" with tfds_decoder='tfds'" if tfds_decodes else "")
                + "; set data.jpeg_draft=false"
            )
        if self.name == "synthetic":
            for key in ("train_size", "val_size", "test_size"):
                if getattr(self, key) < 1:
                    out.append(
                        f"data.{key} must be >= 1 for generated data, got {getattr(self, key)}"
                    )
            if not 0.0 <= self.two_object_fraction <= 1.0:
                out.append(
                    f"data.two_object_fraction must lie in [0, 1], got {self.two_object_fraction}"
                )
            if not 0 <= self.min_clutter <= self.max_clutter:
                out.append(
                    "data.min_clutter / max_clutter must satisfy 0 <= min <= max, "
                    f"got {self.min_clutter} / {self.max_clutter}"
                )
        return out


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """``config.train``: the T-TAME training recipe (paper §IV-B, DESIGN §4)."""

    # Global batch (split over all devices).
    batch_size: int = 32
    # Epochs; the paper picked 1-8 per backbone on its validation split.
    epochs: int = 8
    # 0: one pass over the train split per epoch; > 0: that many batches.
    steps_per_epoch: int = 0
    # OneCycle peak learning rate.
    max_lr: float = 1e-3
    # OneCycle warm-up fraction.
    pct_start: float = 0.3
    # Initial lr = max_lr / div_factor.
    div_factor: float = 25.0
    # Final lr = initial lr / final_div_factor.
    final_div_factor: float = 1e4
    # Momentum at the lr peak.
    base_momentum: float = 0.85
    # Momentum at the start and the end (cycled inversely to the lr).
    max_momentum: float = 0.95
    # Nesterov momentum.
    nesterov: bool = True
    # L2 on all attention parameters except biases.
    weight_decay: float = 5e-4
    # Seed of the attention's init, the shuffling and the augmentation.
    seed: int = 0
    # Steps between stdout / metrics.jsonl records.
    log_every: int = 50
    # Steps between checkpoints (there is one at each epoch end too).
    checkpoint_every: int = 1000
    # Checkpoints kept on disk (the latest ones; epoch ends see keep_epoch_checkpoints).
    keep_checkpoints: int = 3
    # Also keep every epoch-end checkpoint (the paper's model selection compares them).
    keep_epoch_checkpoints: bool = True
    # Training augmentation: "auto" (the reference's rule: none for CNNs, random crop + flip
    # for ViTs) | "always" | "never" (resize + centre crop).
    augment: str = "auto"
    # Val loss (and AD/IC) after each epoch.
    validate_every_epoch: bool = True
    # 0: the whole val split; > 0: that many val batches.
    val_steps: int = 0
    # AD/IC at this kept fraction on val (0: off); the paper's model selection.
    val_adic_percent: float = 0.15
    # > 0: stop (resumable) once this global step is reached.
    halt_after_steps: int = 0
    # tqdm bar with images/s.
    progress_bar: bool = True
    # Also write TensorBoard event files to workdir/tensorboard (needs tensorboardX).
    tensorboard: bool = True

    def errors(self) -> list[str]:
        out = []
        for name, low in (
            ("batch_size", 1),
            ("epochs", 1),
            ("steps_per_epoch", 0),
            ("log_every", 1),
            ("checkpoint_every", 1),
            ("keep_checkpoints", 1),
            ("val_steps", 0),
            ("halt_after_steps", 0),
        ):
            v = getattr(self, name)
            if not _is_int(v) or v < low:
                out.append(f"train.{name} must be an integer >= {low}, got {v!r}")
        for name in ("max_lr", "div_factor", "final_div_factor"):
            if not getattr(self, name) > 0:
                out.append(f"train.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.pct_start <= 1.0:
            out.append(f"train.pct_start must lie in [0, 1], got {self.pct_start!r}")
        if not 0.0 <= self.base_momentum <= self.max_momentum < 1.0:
            out.append(
                "train.base_momentum / max_momentum must satisfy 0 <= base <= max < 1, "
                f"got {self.base_momentum!r} / {self.max_momentum!r}"
            )
        if self.weight_decay < 0:
            out.append(f"train.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 <= self.val_adic_percent < 1.0:
            out.append(f"train.val_adic_percent must lie in [0, 1), got {self.val_adic_percent!r}")
        if self.augment not in AUGMENT:
            out.append(f"train.augment must be one of {AUGMENT}, got {self.augment!r}")
        return out

    def augments(self, kind: str) -> bool:
        """Whether training batches of a ``kind`` ("cnn" / "vit") backbone are augmented."""
        return self.augment == "always" or (self.augment == "auto" and kind == "vit")


_ROAD_COMPAT = ("grad-cam", "road")
_ROAD_SPACES = ("normalised", "pixel")
_ADIC_MASKING = ("pixel", "backbone")
_RISE_SCORES = ("softmax", "logits")
_SPLITS = ("test", "val")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """``config.eval``: what ``evaluate.py`` / the benchmark score (docs/evaluation.md)."""

    # Methods: "ttame" and baseline names (gradcam, gradcampp, scorecam, ablationcam, rise).
    methods: tuple[str, ...] = ("ttame",)
    # Checkpoint step evaluated (None: the latest).
    step: int | None = None
    # Data split: "test" (the paper's tables) | "val" (model selection).
    split: str = "test"
    # Evaluate the first N images of the split (None: all).
    num_images: int | None = None
    # Images per batch (also the granularity of the resumable cache).
    batch_size: int = 32
    # ROAD pixel selection: "grad-cam" (pytorch-grad-cam's rule, the paper's numbers) |
    # "road" (rank-based, the original ROAD paper).
    road_compat: str = "grad-cam"
    # Where ROAD imputes for T-TAME: "normalised" | "pixel" ([0, 1]) | None (road_compat's own).
    road_space_ttame: str | None = None
    # Where ROAD imputes for the baselines: "normalised" | "pixel" | None (road_compat's own).
    road_space_baselines: str | None = None
    # AD/IC masking: "pixel" (normalise(mask * x), the reference) | "backbone" (T-TAME's rule).
    adic_masking: str = "pixel"
    # Also compute insertion / deletion AUC (RISE paper).
    insertion_deletion: bool = False
    # Curve steps of insertion / deletion.
    insertion_deletion_steps: int = 100
    # RISE masks per image (None: RISE's default of 8000; the paper used 4000 for VGG-16).
    rise_masks: int | None = None
    # Seed of the RISE masks.
    rise_seed: int = 0
    # RISE mask weights: "softmax" (target probability) | "logits" (the reference's tables).
    rise_scores: str = "softmax"
    # Masked inputs per backbone call for scorecam / ablationcam / rise (None: their default).
    chunk_size: int | None = None
    # Tap explained by the CAM baselines (None: the last T-TAME tap; with cam_backbone, that
    # backbone's cam_layer).
    baseline_layer: str | None = None
    # Registered backbone that the CAM baselines (gradcam, gradcampp, scorecam, ablationcam)
    # explain and are scored on, with its own top-1 as target (None: the checkpoint's);
    # "deit_base_patch16_224" is the reference's ViT protocol (docs/evaluation.md).
    cam_backbone: str | None = None
    # Weights of cam_backbone: a file, "random" (tests) or None (torch hub's cache folder).
    cam_backbone_weights: str | None = None
    # Ablation-CAM reproduces pytorch-grad-cam run with this batch_size (its ablation values
    # depend on it): 8 as in the T-TAME reference; 32 is pytorch-grad-cam's default.
    ablation_reference_batch: int = 8
    # Progress bars.
    progress: bool = True

    def errors(self) -> list[str]:
        out = []
        if not self.methods:
            out.append("eval.methods is empty; name at least one method (e.g. ttame)")
        if len(set(self.methods)) != len(self.methods):
            out.append(f"eval.methods lists a method twice: {self.methods}")
        if self.split not in _SPLITS:
            out.append(f"eval.split must be one of {_SPLITS}, got {self.split!r}")
        if self.road_compat not in _ROAD_COMPAT:
            out.append(f"eval.road_compat must be one of {_ROAD_COMPAT}, got {self.road_compat!r}")
        for name in ("road_space_ttame", "road_space_baselines"):
            value = getattr(self, name)
            if value is not None and value not in _ROAD_SPACES:
                out.append(f"eval.{name} must be one of {_ROAD_SPACES} or None, got {value!r}")
        if self.adic_masking not in _ADIC_MASKING:
            out.append(
                f"eval.adic_masking must be one of {_ADIC_MASKING}, got {self.adic_masking!r}"
            )
        if self.rise_scores not in _RISE_SCORES:
            out.append(f"eval.rise_scores must be one of {_RISE_SCORES}, got {self.rise_scores!r}")
        for name, low in (
            ("batch_size", 1),
            ("insertion_deletion_steps", 1),
            ("ablation_reference_batch", 1),
        ):
            if getattr(self, name) < low:
                out.append(f"eval.{name} must be >= {low}, got {getattr(self, name)}")
        for name in ("num_images", "rise_masks", "chunk_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                out.append(f"eval.{name} must be >= 1 (or None), got {value}")
        if self.step is not None and self.step < 0:
            out.append(f"eval.step must be >= 0 (or None for the latest), got {self.step}")
        if self.cam_backbone_weights is not None and self.cam_backbone is None:
            out.append(
                "eval.cam_backbone_weights is set but eval.cam_backbone is not; name the "
                "backbone (e.g. eval.cam_backbone=deit_base_patch16_224) or drop the weights"
            )
        return out


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """``config.benchmark``: the synthetic ground-truth benchmark (docs/benchmark.md)."""

    # Backbones trained from scratch and explained; () = not a benchmark run (train.py
    # then trains T-TAME on config.backbone).
    backbones: tuple[str, ...] = ()
    # T-TAME is trained once per seed (its train.seed: the attention's init, the data order
    # and the generated training sample change; the backbone does not). The report gives
    # T-TAME's mean and range over them; figures show the median seed.
    ttame_seeds: tuple[int, ...] = (0, 1, 2)
    # Two-object test images of the counterfactual check.
    num_counterfactual: int = 32
    # Images in the overlay figures (per backbone).
    num_figures: int = 4
    # Stage headers and the backbones' progress bars.
    progress: bool = True

    def errors(self) -> list[str]:
        out = []
        stray = [b for b in self.backbones if not b.startswith("synthetic_")]
        if stray:
            out.append(
                f"the benchmark trains synthetic backbones only, got {stray}; use "
                "synthetic_cnn and/or synthetic_vit"
            )
        if self.num_counterfactual < 1 or self.num_figures < 1:
            out.append("benchmark.num_counterfactual and num_figures must be >= 1")
        if not self.ttame_seeds or len(set(self.ttame_seeds)) != len(self.ttame_seeds):
            out.append(f"benchmark.ttame_seeds must be distinct seeds, got {self.ttame_seeds}")
        return out


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """``config.classifier``: the benchmark's backbones, trained from scratch (AdamW,
    10 % warm-up then cosine decay; ``ttame_jax/training/classifier.py``).

    Measured test accuracy per seed: cnn at 400 steps / 4e-3: 99.6 % (seed 1), 98.3 %
    (seed 2), 98.4 % (seed 3); at 250 steps it was 97.9 / 95.3 / 91.4 % (seeds 0-2).
    The hybrid vit (the trained cnn's stem, then 4 transformer blocks read out by the
    class token) at 100 steps / 1e-3: 96.5 % (seed 1), 100 % (seed 0); ViTs with their own
    stem stayed at chance for 100+ steps.
    """

    # AdamW steps of synthetic_cnn.
    cnn_steps: int = 400
    # Its peak learning rate.
    cnn_lr: float = 4e-3
    # AdamW steps of synthetic_vit.
    vit_steps: int = 100
    # Its peak learning rate.
    vit_lr: float = 1e-3
    # The hybrid ViT's stem starts from this backbone kind, trained first ("" = none).
    vit_init_from: str = "cnn"
    # Images per step (both backbones).
    batch_size: int = 64
    # AdamW decoupled weight decay.
    weight_decay: float = 0.05
    # The report flags a backbone below this test accuracy.
    min_accuracy: float = 0.95

    def errors(self) -> list[str]:
        out = []
        for kind in ("cnn", "vit"):
            if getattr(self, f"{kind}_steps") < 1 or getattr(self, f"{kind}_lr") <= 0:
                out.append(f"classifier.{kind}_steps must be >= 1 and {kind}_lr > 0")
        if self.vit_init_from not in ("", "cnn"):
            out.append(f"classifier.vit_init_from must be '' or 'cnn', got {self.vit_init_from!r}")
        if self.batch_size < 1:
            out.append(f"classifier.batch_size must be >= 1, got {self.batch_size}")
        return out


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: T-TAME training, its evaluation and (optionally) the benchmark."""

    backbone: BackboneConfig = BackboneConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    classifier: ClassifierConfig = ClassifierConfig()

    @property
    def is_benchmark(self) -> bool:
        """True for the synthetic benchmark (``benchmark.backbones`` is not empty)."""
        return bool(self.benchmark.backbones)

    def errors(self) -> list[str]:
        """Every problem the schema can see, one line each (empty: the config is fine)."""
        return [e for f in dataclasses.fields(self) for e in getattr(self, f.name).errors()]

    def check(self) -> Config:
        """Returns ``self``; raises one ``ValueError`` listing every problem."""
        raise_errors(self.errors())
        return self

    def replace(self, **sections) -> Config:
        """A copy with whole sections replaced: ``config.replace(train=...)``."""
        return dataclasses.replace(self, **sections)


# Section name -> its dataclass, in declaration order.
SECTIONS: dict[str, type] = typing.get_type_hints(Config)


def raise_errors(errors: list[str]) -> None:
    """One ``ValueError`` with every line of ``errors`` (nothing if it is empty)."""
    if errors:
        raise ValueError("invalid config:\n  - " + "\n  - ".join(errors))


# --------------------------------------------------------------------------------------
# Conversions.


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _close(name: str, known) -> str:
    match = difflib.get_close_matches(name, list(known), n=1)
    return f' Did you mean "{match[0]}"?' if match else ""


def _coerce(where: str, value: Any, hint: Any) -> tuple[Any, str | None]:
    """``value`` as the field type ``hint``, or an error message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None:
            return None, None
        inner = [a for a in args if a is not type(None)]
        return _coerce(where, value, inner[0])
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            return value, f"{where} must be a list, got {value!r}"
        items = [_coerce(f"{where}[{i}]", v, args[0]) for i, v in enumerate(value)]
        bad = [e for _, e in items if e]
        return tuple(v for v, _ in items), (bad[0] if bad else None)
    if hint is bool:
        return value, None if isinstance(
            value, bool
        ) else f"{where} must be true or false, got {value!r}"
    if hint is int:
        return value, None if _is_int(value) else f"{where} must be an integer, got {value!r}"
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value), None
        return value, f"{where} must be a number, got {value!r}"
    if hint is str:
        return value, None if isinstance(value, str) else f"{where} must be a string, got {value!r}"
    raise TypeError(f"unsupported field type {hint} of {where}")


def _section(name: str, cls, values: Mapping[str, Any], errors: list[str]):
    hints = _hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            errors.append(
                f"unknown field config.{name}.{key}; config.{name} has: "
                f"{', '.join(sorted(hints))}.{_close(key, hints)}"
            )
            continue
        value, error = _coerce(f"{name}.{key}", value, hints[key])
        if error:
            errors.append(error)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _as_mapping(obj: Any, what: str) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        return obj
    if hasattr(obj, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        return obj.to_dict()
    raise TypeError(f"{what} must be a mapping or a ConfigDict, got {type(obj).__name__}")


def _build(values: Any, errors: list[str]) -> Config:
    """``from_dict`` that appends its problems to ``errors`` instead of raising."""
    if isinstance(values, Config):
        errors.extend(values.errors())
        return values
    values = _as_mapping(values, "a config")
    sections = {}
    for name, body in values.items():
        if name not in SECTIONS:
            errors.append(
                f"unknown config section {name!r}; sections: {', '.join(SECTIONS)}."
                + _close(name, SECTIONS)
            )
            continue
        cls = SECTIONS[name]
        if isinstance(body, cls):
            sections[name] = body
        else:
            sections[name] = _section(name, cls, _as_mapping(body, f"config.{name}"), errors)
    config = Config(**sections)
    errors.extend(config.errors())
    return config


def from_dict(values: Any) -> Config:
    """A checked :class:`Config` from a nested mapping (or ConfigDict, or ``Config``).

    Absent sections and fields take their defaults; unknown ones, wrongly typed values
    and failed checks are all reported in one ``ValueError``.
    """
    errors: list[str] = []
    config = _build(values, errors)
    raise_errors(errors)
    return config


def to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict of every field (tuples stay tuples; JSON writes them as lists)."""
    return dataclasses.asdict(config)


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _parse(where: str, text: str, hint: Any) -> Any:
    """A command-line string as a value of type ``hint`` (``None``/``none`` for optional)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", ""):
            return None
        return _parse(where, text, [a for a in args if a is not type(None)][0])
    if origin is tuple:
        body = text.strip()
        if body[:1] in "([" and body[-1:] in ")]":
            body = body[1:-1]
        items = [t.strip().strip("'\"") for t in body.split(",")]
        return tuple(_parse(where, t, args[0]) for t in items if t)
    if hint is bool:
        if text.strip().lower() in _TRUE:
            return True
        if text.strip().lower() in _FALSE:
            return False
        raise ValueError(f"{where} must be true or false, got {text!r}")
    try:
        return int(text) if hint is int else float(text) if hint is float else text
    except ValueError:
        kind = "an integer" if hint is int else "a number"
        raise ValueError(f"{where} must be {kind}, got {text!r}") from None


def with_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """``config`` with ``{"section.field": value}`` applied, then checked.

    String values for non-string fields are parsed by the field's type (command-line
    overrides: ``"4"``, ``"true"``, ``"none"``, ``"ttame,gradcam"`` for a tuple).
    Every bad name or value is reported in one ``ValueError``.
    """
    errors: list[str] = []
    changes: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        section, _, field = dotted.partition(".")
        if section not in SECTIONS or not field:
            errors.append(
                f"unknown config field {dotted!r}: expected section.field with a section of "
                f"{', '.join(SECTIONS)}.{_close(section, SECTIONS)}"
            )
            continue
        hints = _hints(SECTIONS[section])
        if field not in hints:
            errors.append(
                f"unknown field config.{dotted}; config.{section} has: "
                f"{', '.join(sorted(hints))}.{_close(field, hints)}"
            )
            continue
        if isinstance(value, str) and hints[field] is not str:
            try:
                value = _parse(f"config.{dotted}", value, hints[field])
            except ValueError as err:
                errors.append(str(err))
                continue
        changes.setdefault(section, {})[field] = value
    merged = to_dict(config)
    for section, fields in changes.items():
        merged[section].update(fields)
    config = _build(merged, errors)
    raise_errors(errors)
    return config


__all__ = [
    "BackboneConfig",
    "BenchmarkConfig",
    "ClassifierConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "DATA_NAMES",
    "SECTIONS",
    "from_dict",
    "raise_errors",
    "to_dict",
    "with_overrides",
]

"""Shared parts of the T-TAME training configs (the paper recipe, DESIGN §4).

Each experiment file (``vgg16.py``, ``resnet50.py``, ``vit.py``) calls
:func:`get_base_config` with its backbone and, for ``:smoke``, :func:`smoke`.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from ttame_jax.backbones import get_spec
from ttame_jax.data import DEFAULTS as DATA_DEFAULTS
from ttame_jax.data import synthetic

VARIANTS = ("smoke", "1tap")


def parse_variants(arg: str | None) -> frozenset[str]:
    """The variants named after the colon in ``--config=file.py:v1,v2``.

    ``smoke`` shrinks the run to a CPU minute on generated data; ``1tap`` keeps only the
    last of the backbone's default taps (the one-tap T-TAME variant, close to L-CAM-Img).
    """
    names = frozenset(v.strip() for v in (arg or "").split(",") if v.strip())
    unknown = sorted(names - set(VARIANTS))
    if unknown:
        raise ValueError(
            f"unknown config variant(s) {unknown}; use any of {VARIANTS}, comma-separated "
            "(e.g. configs/vit.py:smoke or configs/resnet50.py:1tap,smoke)"
        )
    return names


def build(backbone: str, arg: str | None) -> ml_collections.ConfigDict:
    """The locked config of ``backbone`` with the variants of ``arg`` applied."""
    variants = parse_variants(arg)
    config = get_base_config(backbone)
    if "1tap" in variants:
        config.model.taps = (get_spec(backbone).taps[-1],)
    if "smoke" in variants:
        config = smoke(config)
    config.lock()
    return config


def get_base_config(backbone: str) -> ml_collections.ConfigDict:
    """The paper's recipe on ImageNet for ``backbone`` (unlocked; the caller locks it)."""
    c = ml_collections.ConfigDict()

    c.backbone = ml_collections.ConfigDict()
    c.backbone.name = backbone  # registry name: vgg16 | resnet50 | vit_b_16 | synthetic_*
    # Weights: a .pth/.safetensors/.msgpack path, "random" (random init, for tests), or
    # None: torchvision's checkpoint file in the torch hub cache (error naming it if absent).
    c.backbone.weights = config_dict.placeholder(str)
    c.backbone.seed = 0  # seed of the random init when weights == "random"

    c.model = ml_collections.ConfigDict()
    c.model.taps = ()  # torchvision node names of the taps; () = the paper's 3 default taps
    c.model.skip = True  # skip connection in each branch (Table 6: "no skip")
    c.model.batchnorm = True  # BatchNorm in each branch (Table 6: "no skip + no BN")
    c.model.branch_act = "relu"  # branch activation: "relu" | "sigmoid" (Table 6)
    c.model.max_resolution = 56  # cap on the explanation map side (H_e, W_e)
    c.model.masking = "auto"  # "auto" (by backbone kind) | "cnn" (eq. 13) | "vit" (eq. 14)

    c.loss = ml_collections.ConfigDict()
    c.loss.variant = "reference"  # "reference" (public code, default) | "paper" (eqs. 15-17)
    c.loss.ce = 1.5  # λ1, cross-entropy weight
    c.loss.area = 2.0  # λ2, area term weight
    c.loss.tv = 0.01  # smoothness weight (paper variant: λ2·λ3, i.e. 0.01 for λ3 = 0.005)
    c.loss.border = 0.3  # border penalty weight inside the smoothness term (reference)
    c.loss.area_power = 0.3  # λ4, exponent of the area term
    c.loss.area_eps = 0.0005  # added to Ψ before the power (reference)

    c.data = ml_collections.ConfigDict()
    c.data.name = "imagefolder"  # "imagefolder" | "imagenet_tfds" | "synthetic"
    c.data.root = config_dict.placeholder(str)  # imagefolder: holds train_dir and val_dir
    c.data.train_dir = DATA_DEFAULTS["train_dir"]  # imagefolder: root/train_dir/<wnid>/*.JPEG
    c.data.val_dir = DATA_DEFAULTS["val_dir"]  # imagefolder: ImageNet validation images
    c.data.train_list = config_dict.placeholder(str)  # optional list file of train images
    c.data.val_list = config_dict.placeholder(str)  # optional list file of the val split
    c.data.test_list = config_dict.placeholder(str)  # optional list file of the test split
    c.data.tfds_name = DATA_DEFAULTS["tfds_name"]  # imagenet_tfds: TFDS dataset name
    c.data.data_dir = config_dict.placeholder(str)  # imagenet_tfds: TFDS data dir
    c.data.val_size = DATA_DEFAULTS["val_size"]  # seeded val selection of the val set
    c.data.test_size = DATA_DEFAULTS["test_size"]  # seeded test selection (disjoint)
    c.data.split_seed = DATA_DEFAULTS["split_seed"]  # seed of the val/test selection
    c.data.num_workers = config_dict.placeholder(int)  # decoding threads (None: all cores)

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 32  # global batch (split over all devices)
    c.train.epochs = 8  # the paper picked 1-8 per backbone on its validation split
    c.train.steps_per_epoch = 0  # 0: one pass over the train split; > 0: that many batches
    c.train.max_lr = 1e-3  # OneCycle peak learning rate
    c.train.pct_start = 0.3  # OneCycle warm-up fraction
    c.train.div_factor = 25.0  # initial lr = max_lr / div_factor
    c.train.final_div_factor = 1e4  # final lr = initial lr / final_div_factor
    c.train.base_momentum = 0.85  # momentum at the lr peak
    c.train.max_momentum = 0.95  # momentum at start and end (cycled inversely to lr)
    c.train.nesterov = True  # Nesterov momentum
    c.train.weight_decay = 5e-4  # L2 on all attention parameters except biases
    c.train.seed = 0  # init, shuffling and augmentation seed
    c.train.log_every = 50  # steps between stdout / metrics.jsonl records
    c.train.checkpoint_every = 1000  # steps between checkpoints (also at each epoch end)
    c.train.keep_checkpoints = 3  # checkpoints kept on disk
    c.train.validate_every_epoch = True  # val loss (and AD/IC) after each epoch
    c.train.val_steps = 0  # 0: the whole val split; > 0: that many val batches
    c.train.val_adic_percent = 0.15  # AD/IC at this kept fraction on val (0: off)
    c.train.halt_after_steps = 0  # > 0: stop (resumable) once this global step is reached
    c.train.progress_bar = True  # tqdm bar with images/s
    return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks ``c`` to a CPU run of about a minute: generated data, random weights."""
    c.backbone.weights = "random"
    c.data = synthetic.default_config()
    c.data.train_size = 8  # rendered at the backbone's input size
    c.data.val_size = 2
    c.data.test_size = 2
    c.train.batch_size = 2
    c.train.epochs = 2
    c.train.steps_per_epoch = 2
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.val_steps = 1
    return c

"""The synthetic ground-truth benchmark (issue 6): train.py's default config.

    python train.py --workdir=runs/benchmark          # this config is the default
    python train.py --config=configs/synthetic.py:smoke --workdir=/tmp/bench_smoke

For each backbone in ``benchmark.backbones`` it trains the backbone from scratch
on generated images, trains T-TAME on it, evaluates T-TAME and the baselines
(AD/IC, ROAD, insertion/deletion, pointing game, mass inside the evidence,
counterfactual check) and writes ``report.md``, ``report.json`` and
``figures/`` into the workdir (resumable: finished stages are reused).
Logic: :func:`ttame_jax.benchmark.pipeline.run_benchmark`; docs/benchmark.md.

The sizes are chosen so that the default run takes 5-6 minutes on 2 idle CPU cores
(at most 10; measured 5 min 28 s); ``smoke`` (also ``test``) is a reduced run for the
tests.
The top level is a T-TAME training config (``configs/common.py``) whose
``backbone.name`` / ``backbone.weights`` the pipeline sets per backbone.
"""

import ml_collections

from configs import common, synthetic_backbone

VARIANTS = ("", "smoke", "test")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Benchmark config; ``arg`` = "" (the full run) or "smoke" / "test" (tests)."""
    variant = (arg or "").strip()
    if variant not in VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r} of configs/synthetic.py; use one of {VARIANTS} "
            "(e.g. --config=configs/synthetic.py:smoke)"
        )
    c = common.get_base_config("synthetic_cnn")  # name/weights are set per backbone
    c.backbone.weights = "random"  # replaced by the trained backbone's .msgpack

    c.data.name = "synthetic"
    c.data.train_size = 4000  # generated training images (backbones and T-TAME)
    c.data.val_size = 64  # T-TAME's per-epoch validation
    c.data.test_size = 400  # backbone accuracy on its single-object images; the first
    # benchmark.num_images of it are explained and scored
    c.data.two_object_fraction = 0.25  # test images with two targets (counterfactual check)
    c.data.min_clutter = 2  # clutter objects per image (no class information)
    c.data.max_clutter = 5

    c.train.batch_size = 32  # T-TAME batch
    c.train.epochs = 2  # T-TAME epochs
    c.train.steps_per_epoch = 50  # T-TAME steps per epoch (0: a full pass)
    c.train.max_lr = 1e-2  # OneCycle peak (higher than ImageNet's 1e-3: far fewer steps)
    c.train.log_every = 20
    c.train.checkpoint_every = 1000  # checkpoints at epoch ends only
    c.train.keep_checkpoints = 1
    c.train.val_steps = 2  # val batches per epoch
    c.train.val_adic_percent = 0.0  # AD/IC is measured on the test split by the benchmark

    # Backbone training (training/classifier.py); steps and learning rates follow the
    # recipes of configs/synthetic_backbone.py.
    cnn, vit = synthetic_backbone.get_config("cnn"), synthetic_backbone.get_config("vit")
    c.classifier = ml_collections.ConfigDict()
    c.classifier.cnn_steps = cnn.steps  # AdamW steps of synthetic_cnn
    c.classifier.cnn_lr = cnn.lr  # its peak learning rate
    c.classifier.vit_steps = vit.steps  # AdamW steps of synthetic_vit
    c.classifier.vit_lr = vit.lr
    c.classifier.vit_init_from = vit.init_from  # the hybrid ViT's stem starts from the cnn
    c.classifier.batch_size = cnn.batch_size  # images per step (both backbones)
    c.classifier.weight_decay = cnn.weight_decay
    c.classifier.min_accuracy = 0.95  # the report flags a backbone below this test accuracy

    c.benchmark = ml_collections.ConfigDict()  # its presence makes train.py run the benchmark
    c.benchmark.backbones = ("synthetic_cnn", "synthetic_vit")
    # Evaluated methods: T-TAME and the baselines of ttame_jax.baselines.METHODS.
    c.benchmark.methods = ("ttame", "gradcam", "gradcampp", "scorecam", "ablationcam", "rise")
    c.benchmark.num_images = 64  # first N test images scored (AD/IC, ROAD, ins/del, loc.)
    c.benchmark.batch_size = 32  # images per evaluation batch (also the cache granularity)
    c.benchmark.rise_masks = 150  # RISE masks per image (the paper: 4000 at 224 px; budget)
    c.benchmark.insertion_deletion = True  # also insertion / deletion AUC
    # Its curve steps: 128 of the 4096 pixels per step (RISE used H W / 224 pixels per step,
    # i.e. 18 steps at 64 px); the evaluator's default of 100 costs 3x the time.
    c.benchmark.insertion_deletion_steps = 32
    c.benchmark.num_counterfactual = 32  # two-object test images for the counterfactual check
    c.benchmark.num_figures = 4  # images in the overlay figures (per backbone)
    c.benchmark.progress = True  # stage headers and tqdm bars

    if variant in ("smoke", "test"):  # one backbone, two methods, tiny data: ~1-2 min
        c.data.train_size, c.data.val_size, c.data.test_size = 2000, 16, 64
        c.train.batch_size, c.train.epochs, c.train.steps_per_epoch = 16, 1, 6
        c.train.val_steps, c.train.log_every = 1, 3
        c.classifier.cnn_steps, c.classifier.vit_steps = 150, 150  # fewer: stuck at chance
        c.benchmark.backbones = ("synthetic_cnn",)
        c.benchmark.methods = ("ttame", "gradcam")
        c.benchmark.num_images = 16
        c.benchmark.batch_size = 16
        c.benchmark.num_counterfactual = 4
        c.benchmark.num_figures = 2
        c.benchmark.progress = variant == "smoke"
    c.lock()
    return c

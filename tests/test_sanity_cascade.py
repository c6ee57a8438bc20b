"""Cascading randomisation on a small model: similarity to the original map drops."""

import jax
import pytest

from ttame_jax import backbones, configs
from ttame_jax.core.explainer import Explainer
from ttame_jax.core.model import build
from ttame_jax.data import synthetic
from ttame_jax.sanity import cascading_randomization


@pytest.fixture(scope="module")
def result():
    """synthetic_cnn (random weights) + T-TAME at init, on 3 synthetic scenes."""
    config = configs.load("resnet50:smoke", {"backbone.name": "synthetic_cnn"})
    spec = backbones.get_spec("synthetic_cnn")
    source = synthetic.SyntheticSource("test", size=spec.input_size, num_examples=3, seed=0)
    images = next(source.batches(3, shuffle=False, augment=False))["image"]
    backbone_vars = backbones.load_pretrained("synthetic_cnn", "random", seed=0)
    model = build(spec, config.model)
    attn_vars = jax.jit(model.init)(jax.random.key(1), backbone_vars, images[:1])
    explainer = Explainer.from_model(model, backbone_vars, attn_vars)
    return cascading_randomization(explainer, images, seed=0)


def test_steps_go_from_the_logits_towards_the_input(result):
    backbone = [s for s in result.steps if s.startswith("backbone/")]
    attention = [s for s in result.steps if s.startswith("attention/")]
    assert backbone == [f"backbone/{u}" for u in
                        ("fc", "layer3.0", "layer2.0", "layer1.0", "bn1", "conv1")]  # fmt: skip
    assert attention[0] == "attention/fuser" and attention[-1].startswith("attention/convs_0")
    assert result.maps.shape == (3, 1 + len(result.steps), 64, 64)
    assert result.spearman.shape == result.ssim.shape == (3, len(result.steps))


def test_similarity_drops_as_layers_are_randomised(result):
    rho, sim = result.spearman.mean(0), result.ssim.mean(0)
    steps = result.steps
    # The maps are computed from the taps (layer1..3), not from fc: step 1 changes nothing.
    assert rho[0] == pytest.approx(1.0) and sim[0] == pytest.approx(1.0)
    last_backbone = max(i for i, s in enumerate(steps) if s.startswith("backbone/"))
    assert rho[last_backbone] < rho[0] - 0.5 and sim[last_backbone] < sim[0] - 0.5
    # Randomising layer3 (the last tap) already moves the map.
    assert rho[1] < 0.95
    # The fully randomised attention mechanism no longer gives the original map.
    assert rho[-1] < 0.5 and sim[-1] < 0.5

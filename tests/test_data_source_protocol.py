"""Every data source implements the whole ``DataSource`` protocol, ``start=`` included."""

import inspect

import numpy as np
from PIL import Image

from ttame_jax.config import DataConfig
from ttame_jax.data import build_source
from ttame_jax.data.loader import ImageSource
from ttame_jax.data.source import DataSource


def _image_source():
    def read(i):
        return Image.fromarray(np.full((20, 20, 3), 10 * i, np.uint8)), i % 2

    return ImageSource(size=6, read=read, input_size=8, seed=0, num_classes=2, class_names=None)


def _synthetic_source():
    data = DataConfig(name="synthetic", train_size=8, val_size=2, test_size=6)
    return build_source(data, "test", input_size=32, seed=0)


def test_sources_implement_the_protocol_with_start():
    want = inspect.signature(DataSource.batches).parameters
    for source in (_image_source(), _synthetic_source()):
        assert isinstance(source, DataSource), type(source).__name__
        got = inspect.signature(source.batches).parameters
        assert set(want) - {"self"} <= set(got), (type(source).__name__, set(want) - set(got))
        assert isinstance(source.describe(0), str) and len(source) == 6
        every = list(source.batches(2))
        later = list(source.batches(2, start=1))  # skips the first batch without reading it
        assert len(later) == len(every) - 1
        for a, b in zip(every[1:], later, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["index"], b["index"])

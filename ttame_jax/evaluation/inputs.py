"""What an evaluation reads besides the run directory (:mod:`ttame_jax.rundir`): the
fixed test split, and the check that an evaluation config fits the checkpoint.

Each function checks its input and fails with a message that says what was
wrong and how to fix it, before any expensive work starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from ttame_jax.config import Config
from ttame_jax.data.source import DataSource


def check_same_model(config: Config, saved: Config) -> None:
    """Rejects an evaluation config whose backbone or taps differ from the checkpoint's."""
    for section, field in (("backbone", "name"), ("model", "taps")):
        ours = getattr(getattr(config, section), field)
        theirs = getattr(getattr(saved, section), field)
        if ours != theirs:
            raise ValueError(
                f"the evaluation config has {section}.{field}={ours!r} but the checkpoint was "
                f"trained with {theirs!r}; use the training config (or omit --config to use the "
                "checkpoint's)"
            )


def open_split(config: Config, split: str, input_size: int) -> DataSource:
    """The data source of ``split`` described by ``config.data``.

    Raises:
      FileNotFoundError / ValueError: from the data package, with the data config added.
    """
    from ttame_jax.data import build_source

    try:
        source = build_source(config.data, split, input_size=input_size, seed=0)
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        missing = isinstance(err, (FileNotFoundError, NotADirectoryError))
        raise (FileNotFoundError if missing else ValueError)(
            f"cannot open the {split} split of config.data (name={config.data.name!r}): "
            f"{err} (override data fields with --config.data.<field>=...; see docs/data.md)"
        ) from err
    if len(source) == 0:
        raise FileNotFoundError(f"the {split} split of config.data is empty: {config.data}")
    return source


def split_fingerprint(config: Config, split: str, source: DataSource) -> str:
    """Hash of the data config, split size and the names of its images."""
    data = dataclasses.asdict(config.data)
    digest = hashlib.sha256(json.dumps([split, data, len(source)], default=str).encode())
    for i in range(len(source)):
        digest.update(str(source.describe(i)).encode() + b"\n")
    return digest.hexdigest()[:16]

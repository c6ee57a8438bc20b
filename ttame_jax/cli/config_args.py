"""``--config=NAME[:variant]`` and ``--config.section.field=value`` on the command line.

Shared by ``ttame train`` and ``ttame evaluate`` (and so by ``train.py`` /
``evaluate.py``). Overrides are parsed by the schema (:func:`ttame_jax.config.with_overrides`):
``--config.train.epochs=4``, ``--config.backbone.weights=none``,
``--config.eval.methods=ttame,gradcam``. A misspelt field is an error that names the
close match.
"""

from __future__ import annotations

import argparse

PREFIX = "--config."


def add_config_argument(parser: argparse.ArgumentParser, default: str | None, help: str) -> None:
    parser.add_argument("--config", default=default, metavar="NAME[:VARIANT]", help=help)
    parser.epilog = (
        "Any config field can be set with --config.SECTION.FIELD=VALUE (e.g. "
        "--config.train.epochs=4, --config.eval.methods=ttame,gradcam); see ttame_jax/config.py."
    )


def split_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """``argv`` without its ``--config.a.b=v`` / ``--config.a.b v`` items, and those as
    ``{"a.b": "v"}``.

    Raises:
      ValueError: an override without a value.
    """
    rest, overrides = [], {}
    items = iter(argv)
    for item in items:
        if not item.startswith(PREFIX):
            rest.append(item)
            continue
        name, eq, value = item[len(PREFIX) :].partition("=")
        if not eq:
            value = next(items, None)
            if value is None or value.startswith("--"):
                raise ValueError(f"{item} needs a value: {item}=VALUE")
        overrides[name] = value
    return rest, overrides


def parse(parser: argparse.ArgumentParser, argv: list[str]):
    """``(args, overrides)``: argparse's namespace and the config overrides."""
    try:
        rest, overrides = split_overrides(argv)
    except ValueError as err:
        parser.error(str(err))
    return parser.parse_args(rest), overrides

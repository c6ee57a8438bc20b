"""The ``ttame`` console script.

    ttame train --config=vit --workdir=runs/vit [--config.x.y=...]
    ttame evaluate --checkpoint=runs/vit [--config.eval.methods=ttame,gradcam ...]
    ttame explain --checkpoint runs/vit photos/ cat.jpg --out explained/ [--top-k 3]
    ttame sanity --checkpoint runs/vit cat.jpg dog.png --out sanity/
    ttame import-reference resnet50.ckpt --backbone resnet50 --workdir runs/ref_resnet50

Every command runs in this process from the installed package (``train.py`` and
``evaluate.py`` in the repository are thin wrappers of ``train`` and ``evaluate``).
Each is documented by ``ttame <command> --help`` and in docs/cli.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module of ttame_jax.cli, takes --config.x.y overrides)
COMMANDS = {
    "train": ("train", True),
    "evaluate": ("evaluate", True),
    "explain": ("explain", False),
    "sanity": ("sanity", False),
    "import-reference": ("import_reference", False),
}
_HELP = {
    "explain": "explain image files/folders: overlays, maps, top-k classes",
    "sanity": "cascading randomisation sanity check: figure + Spearman/SSIM per step",
    "import-reference": "write a workdir from the reference implementation's trained .ckpt",
}


def _module(command: str):
    return importlib.import_module(f"ttame_jax.cli.{COMMANDS[command][0]}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttame", description="T-TAME explanations in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name in COMMANDS:
        module = _module(name)
        text = getattr(module, "HELP", None) or _HELP[name]
        module.add_arguments(sub.add_parser(name, help=text, description=text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 = success, 2 = bad input, with a message)."""
    from ttame_jax import xla_cpu
    from ttame_jax.cli import config_args

    xla_cpu.use_for_process()  # before any computation: XLA reads its flags once
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    command = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        if command is not None and COMMANDS[command][1]:
            args, overrides = config_args.parse(parser, argv)
            return _module(command).run(args, overrides)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return _module(args.command).run(args, argv)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"ttame {command or ''}: error: {e}".replace("  ", " "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``ttame`` console script.

    ttame train --config=configs/vit.py --workdir=runs/vit [--config.x.y=...]
    ttame evaluate --checkpoint=runs/vit [--methods=ttame,gradcam ...]
    ttame explain --checkpoint runs/vit photos/ cat.jpg --out explained/ [--top-k 3]
    ttame sanity --checkpoint runs/vit cat.jpg dog.png --out sanity/

``train`` and ``evaluate`` run the project's ``train.py`` / ``evaluate.py`` with the
same flags (absl flags, ``--helpfull`` lists them), so there is one implementation of
each; they need the project checkout (its ``configs/``), found next to the installed
package or in the current folder. ``explain`` and ``sanity`` are documented in
docs/cli.md and by ``ttame <command> --help``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

SCRIPTS = {"train": "train.py", "evaluate": "evaluate.py"}
_HELP = {
    "train": "train T-TAME (flags of train.py)",
    "evaluate": "evaluate a checkpoint and baselines (flags of evaluate.py)",
    "explain": "explain image files/folders: overlays, maps, top-k classes",
    "sanity": "cascading randomisation sanity check: figure + Spearman/SSIM per step",
}


def find_script(name: str) -> str:
    """Path of the project's ``train.py`` / ``evaluate.py`` (checkout or current folder)."""
    import ttame_jax

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(ttame_jax.__file__)))
    for root in (package_parent, os.getcwd()):
        path = os.path.join(root, name)
        if os.path.isfile(path) and os.path.isdir(os.path.join(root, "configs")):
            return path
    raise FileNotFoundError(
        f"ttame {name[:-3]} runs the project's {name}, which is not next to the installed "
        f"package ({package_parent}) nor in {os.getcwd()}: run it from the ttame-jax checkout "
        f"or install the checkout with pip install -e ."
    )


def run_script(name: str, argv: list[str]) -> int:
    """Runs ``train.py`` / ``evaluate.py`` with ``argv`` in a fresh interpreter (absl flags
    are process-global) with the checkout on ``PYTHONPATH`` (for ``configs``)."""
    script = find_script(SCRIPTS[name])
    env = dict(os.environ)
    root = os.path.dirname(script)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.call([sys.executable, script, *argv], env=env)


def _parser() -> argparse.ArgumentParser:
    from ttame_jax.cli import explain, sanity

    parser = argparse.ArgumentParser(prog="ttame", description="T-TAME explanations in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,explain,sanity}")
    for name in SCRIPTS:
        sub.add_parser(name, help=_HELP[name], add_help=False)
    for name, module in (("explain", explain), ("sanity", sanity)):
        module.add_arguments(sub.add_parser(name, help=_HELP[name], description=_HELP[name]))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 = success)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SCRIPTS:
        try:
            return run_script(argv[0], argv[1:])
        except FileNotFoundError as e:
            print(f"ttame: error: {e}", file=sys.stderr)
            return 2
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from ttame_jax.cli import explain, sanity

    command = {"explain": explain, "sanity": sanity}[args.command]
    try:
        return command.run(args, argv)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"ttame {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

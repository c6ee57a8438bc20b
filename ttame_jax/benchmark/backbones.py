"""Get or train a benchmark backbone: the one place that trains the synthetic classifiers.

A backbone is trained from scratch with its recipe in ``config.classifier``; the hybrid
ViT (``classifier.vit_init_from = "cnn"``) starts from the CNN, got or trained first in
the sibling folder. Each folder keeps ``settings.json`` (the recipe, the data config, the
seed and, for the ViT, the CNN's settings), so a changed recipe is never silently reused.
"""

from __future__ import annotations

import dataclasses
import json
import os

from ttame_jax import rundir
from ttame_jax.config import Config


def _settings(config: Config, kind: str, first: dict | None) -> dict:
    cc = config.classifier
    data = {  # loading-speed fields (rundir.COSMETIC_FIELDS) change no image
        k: v
        for k, v in dataclasses.asdict(config.data).items()
        if f"data.{k}" not in rundir.COSMETIC_FIELDS
    }
    return {
        "data": data,
        "steps": getattr(cc, f"{kind}_steps"),
        "lr": getattr(cc, f"{kind}_lr"),
        "batch_size": cc.batch_size,
        "weight_decay": cc.weight_decay,
        "seed": config.train.seed,
        "init_from": first and {"weights": first["weights"], **first["settings"]},
    }


def get_or_train(config: Config, backbone: str, folder: str) -> dict:
    """The trained ``backbone``'s facts, trained into ``folder`` if it is not there yet.

    Returns:
      ``{"backbone", "weights" (the .msgpack path), "accuracy", "facts", "settings"}``.

    Raises:
      ValueError: ``folder`` holds a backbone trained with other settings.
    """
    from ttame_jax.backbones import load_pretrained
    from ttame_jax.training.classifier import train_classifier

    folder = os.path.normpath(folder)
    kind = backbone.removeprefix("synthetic_")
    init_kind = config.classifier.vit_init_from if kind == "vit" else ""
    first = None
    if init_kind:
        name = f"synthetic_{init_kind}"
        first = get_or_train(config, name, os.path.join(os.path.dirname(folder), name))
    settings = _settings(config, kind, first)
    weights = os.path.join(folder, f"{backbone}.msgpack")
    facts_file, settings_file = os.path.join(folder, f"{backbone}.json"), f"{folder}/settings.json"
    if os.path.exists(weights) and os.path.exists(facts_file):
        if not os.path.exists(settings_file):
            raise ValueError(
                f"{folder} holds a trained {backbone} but no settings.json, so its recipe is "
                "unknown; use a new --workdir or delete that folder"
            )
        with open(settings_file) as f:
            saved = json.load(f)
        if saved != json.loads(json.dumps(settings)):
            raise ValueError(
                f"{folder} holds a {backbone} trained with other settings ({saved}); "
                "use a new --workdir or delete that folder"
            )
        print(f"{backbone}: reusing the trained backbone in {folder}")
    else:
        os.makedirs(folder, exist_ok=True)
        with open(settings_file, "w") as f:
            json.dump(settings, f, indent=2)
        train_classifier(
            backbone,
            config.data,
            steps=settings["steps"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            weight_decay=settings["weight_decay"],
            seed=config.train.seed,
            workdir=folder,
            progress=config.benchmark.progress,
            init_from=first and load_pretrained(first["backbone"], first["weights"]),
        )
    with open(facts_file) as f:
        facts = json.load(f)
    return {
        "backbone": backbone,
        "weights": weights,
        "accuracy": facts["test"]["accuracy"],
        "facts": facts,
        "settings": settings,
    }

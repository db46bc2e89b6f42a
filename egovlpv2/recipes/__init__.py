"""The recipes shipped inside the package, found through ``importlib.resources`` so that an installed
package (not only a checkout) has them:

- ``model/*.yaml``: model recipes (``egovlpv2.create_model("egovlpv2-tiny")``);
- ``pretrain/*.yaml``: pre-training recipes (``--config demo``);
- ``finetune/*.yaml``: fine-tuning recipes (``--task epic_mir``);
- ``deepspeed/*.json``: DeepSpeed configs (``--deepspeed zero2``).

Wherever a recipe is asked for, a name picks a shipped one and a path (anything with a file suffix)
names the user's own file.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from egovlpv2.config import ConfigError

KINDS: dict[str, tuple[str, str]] = {  # kind -> (what it is, for messages; file suffix)
    "model": ("model recipe", ".yaml"),
    "pretrain": ("pre-training recipe", ".yaml"),
    "finetune": ("fine-tuning recipe", ".yaml"),
    "deepspeed": ("DeepSpeed config", ".json"),
}


def shipped_dir(kind: str) -> Path:
    """The folder of the shipped recipes of ``kind`` (a real folder: the package is installed unzipped)."""
    if kind not in KINDS:
        raise ValueError(f"unknown recipe kind {kind!r}; known: {sorted(KINDS)}")
    return Path(str(resources.files(__name__).joinpath(kind)))


def recipe_names(kind: str) -> list[str]:
    """Names of the shipped recipes of ``kind``."""
    suffix = KINDS[kind][1]
    return sorted(p.stem for p in shipped_dir(kind).glob(f"*{suffix}"))


def resolve_recipe(kind: str, recipe: str | Path) -> Path:
    """A path as given (it has a suffix), or the shipped recipe of that name; an unknown name is a ConfigError."""
    path = Path(recipe)
    if path.suffix:
        return path
    what, suffix = KINDS[kind]
    shipped = shipped_dir(kind) / f"{recipe}{suffix}"
    if not shipped.is_file():
        raise ConfigError(f"unknown {what} {str(recipe)!r}; shipped: {recipe_names(kind)}")
    return shipped

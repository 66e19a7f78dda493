"""Footage sources for composed videos: the registry in `footage.toml`, resolved to verified files on this machine.

A clip is usable only when a file with its registered sha256 is found: in the damo cache (`cache_dir()/footage`,
where `fetch_footage` puts Debian clips), inside an installed Python package, or at its path on a Debian system that
has the package installed with its docs. Nothing unverified is ever returned.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from damo_cli.data.errors import DataError
from damo_cli.integrity import build_verified, sha256_file
from damo_cli.paths import cache_dir

REGISTRY_FILE = Path(__file__).with_name("footage.toml")
SPLITS = ("train", "heldout")
# A photograph is footage too: composing shows it as a slow pan and zoom of this length (compose._FootageFrames),
# so its usable range must fit inside it.
STILL_SUFFIXES = (".png", ".jpg", ".jpeg")
STILL_PAN_SECONDS = 12.0


def is_still(path: str | Path) -> bool:
    """A photograph, not a video (by its file name: registered files are sha256-checked anyway)."""
    return Path(path).suffix.lower() in STILL_SUFFIXES


@dataclass(frozen=True)
class Clip:
    """One registered piece of footage."""

    name: str
    group: str  # copies of the same footage share a group; a group lives in one split
    split: str
    origin: str  # "pypi" or "debian"
    package: str
    version: str
    path: str  # relative to the module folder (pypi) or inside the .deb (debian)
    sha256: str
    license: str
    start: float
    end: float
    descriptions: tuple[str, ...]
    module: str | None = None
    compose: bool = True

    @property
    def cache_name(self) -> str:
        return f"{self.name}{Path(self.path).suffix}"

    @property
    def usable_seconds(self) -> float:
        return self.end - self.start


def footage_cache_dir() -> Path:
    path = cache_dir() / "footage"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _parse(entry: dict, where: str) -> Clip:
    required = ("name", "group", "split", "origin", "package", "version", "path", "sha256", "license", "descriptions")
    missing = [k for k in required if k not in entry]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)}")
    if entry["split"] not in SPLITS:
        raise DataError(f"{where}: split must be one of {SPLITS}, got {entry['split']!r}")
    if entry["origin"] not in ("pypi", "debian"):
        raise DataError(f"{where}: origin must be 'pypi' or 'debian'")
    if entry["origin"] == "pypi" and not entry.get("module"):
        raise DataError(f"{where}: a pypi clip needs 'module'")
    start = float(entry.get("start", 0.0))
    end = float(entry.get("end", start))
    if end <= start:
        raise DataError(f"{where}: needs a usable range with end > start")
    if is_still(entry["path"]) and end > STILL_PAN_SECONDS:
        raise DataError(f"{where}: a still image is shown as a {STILL_PAN_SECONDS:g} s pan; end must not exceed it")
    descriptions = tuple(entry["descriptions"])
    if not descriptions or not all(isinstance(d, str) and d for d in descriptions):
        raise DataError(f"{where}: descriptions must be non-empty strings")
    return Clip(
        name=entry["name"],
        group=entry["group"],
        split=entry["split"],
        origin=entry["origin"],
        package=entry["package"],
        version=entry["version"],
        path=entry["path"],
        sha256=entry["sha256"].lower(),
        license=entry["license"],
        start=start,
        end=end,
        descriptions=descriptions,
        module=entry.get("module"),
        compose=bool(entry.get("compose", True)),
    )


def load_registry(path: Path = REGISTRY_FILE) -> list[Clip]:
    """All registered clips; checks that names are unique and every group sits in one split."""
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    clips = [_parse(entry, f"{path.name} clip #{i + 1}") for i, entry in enumerate(data.get("clip", []))]
    names = [c.name for c in clips]
    if len(set(names)) != len(names):
        raise DataError(f"{path.name}: duplicate clip names")
    group_split: dict[str, str] = {}
    for c in clips:
        if group_split.setdefault(c.group, c.split) != c.split:
            raise DataError(f"{path.name}: footage group {c.group!r} is in both splits")
    return clips


_REGISTRY: list[Clip] | None = None


def registry() -> list[Clip]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
    return _REGISTRY


def get_clip(name: str) -> Clip:
    for c in registry():
        if c.name == name:
            return c
    raise DataError(f"no footage named {name!r} (known: {', '.join(c.name for c in registry())})")


# sha256 of a large file is ~10-50 ms; remember verified (path, size, mtime) so repeated lookups are free
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _matches(path: Path, sha256: str) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False
    if not path.is_file():
        return False
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    digest = _VERIFIED.get(key)
    if digest is None:
        digest = sha256_file(path)
        _VERIFIED[key] = digest
    return digest == sha256


def candidate_paths(clip: Clip) -> list[Path]:
    """Where this clip may be on this machine, most specific first (nothing is verified here)."""
    candidates = [footage_cache_dir() / clip.cache_name]
    if clip.origin == "pypi" and clip.module:
        spec = importlib.util.find_spec(clip.module)  # locates the package without importing it
        if spec is not None and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                candidates.append(Path(folder) / clip.path)
    elif clip.origin == "debian":
        candidates.append(Path("/") / clip.path)  # installed package (docker images often drop /usr/share/doc)
    return candidates


def resolve(clip: Clip) -> Path | None:
    """A verified local file for `clip`, or None when none is present or none matches its sha256."""
    for path in candidate_paths(clip):
        if _matches(path, clip.sha256):
            return path
    return None


def available(split: str | None = None, *, composable: bool = True) -> list[tuple[Clip, Path]]:
    """Verified clips on this machine, in registry order, optionally only one split's."""
    out = []
    for c in registry():
        if (split is None or c.split == split) and (c.compose or not composable):
            path = resolve(c)
            if path is not None:
                out.append((c, path))
    return out


def missing(split: str | None = None) -> list[Clip]:
    """Composable clips of a split that are not (or not verifiably) on this machine."""
    return [c for c in registry() if c.compose and (split is None or c.split == split) and resolve(c) is None]


def debian_packages(clips: Iterable[Clip] | None = None) -> list[str]:
    names = {c.package for c in (clips if clips is not None else registry()) if c.origin == "debian"}
    return sorted(names)


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise DataError(
            f"{cmd[0]} not found: fetching Debian footage needs a Debian or Ubuntu system (apt-get, dpkg-deb)"
        ) from err
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        hint = " (run 'apt-get update' first?)" if "Unable to locate" in (proc.stderr or "") else ""
        raise DataError(f"{what} failed: {tail[0]}{hint}")


def fetch_footage(
    packages: Iterable[str] | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[Path]:
    """Download the Debian packages that hold registered clips, extract them and cache the verified clips.

    `apt-get download` fetches a .deb into a temporary folder without installing it (no root needed where the
    package lists exist); `dpkg-deb -x` unpacks it; each registered clip is checked against its sha256 and copied
    atomically into `cache_dir()/footage`. Clips already cached and verified are skipped unless `force`.
    Returns the cached paths of every registered Debian clip of the fetched packages.
    """
    wanted = sorted(set(packages)) if packages is not None else debian_packages()
    known = set(debian_packages())
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise DataError(f"no registered footage comes from {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    cache = footage_cache_dir()
    results: list[Path] = []
    for package in wanted:
        clips = [c for c in registry() if c.origin == "debian" and c.package == package]
        todo = [c for c in clips if force or not _matches(cache / c.cache_name, c.sha256)]
        results.extend(cache / c.cache_name for c in clips if c not in todo)
        if not todo:
            log(f"{package}: {len(clips)} clip(s) already cached and verified")
            continue
        with tempfile.TemporaryDirectory(prefix="damo-footage-") as tmp_name:
            tmp = Path(tmp_name)
            log(f"{package}: apt-get download")
            _run(["apt-get", "download", package], tmp, f"apt-get download {package}")
            debs = sorted(tmp.glob(f"{package}_*.deb"))
            if not debs:
                raise DataError(f"apt-get download {package} produced no .deb file")
            extracted = tmp / "x"
            _run(["dpkg-deb", "-x", str(debs[0]), str(extracted)], tmp, f"extracting {debs[0].name}")
            for c in todo:
                source = extracted / c.path
                if not source.is_file():
                    raise DataError(f"{debs[0].name} has no {c.path} (registered for {c.name}; version {c.version})")
                actual = sha256_file(source)
                if actual != c.sha256:
                    raise DataError(
                        f"{c.name}: {c.path} in {debs[0].name} has sha256 {actual[:12]}…, registered "
                        f"{c.sha256[:12]}… (from {package} {c.version}); the package changed, refusing it"
                    )
                target = cache / c.cache_name
                build_verified(target, lambda tmp_path, src=source: shutil.copyfile(src, tmp_path), c.sha256)
                log(f"{package}: cached {c.name} -> {target}")
                results.append(target)
    return results

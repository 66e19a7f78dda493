"""`damo doctor`: is this machine ready to run damo offline, and if not, exactly what to do about it."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata

import typer
from rich.console import Console
from rich.table import Table

# Libraries whose versions matter for reproducing results; reported by `damo doctor`.
KEY_PACKAGES = (
    "torch", "transformers", "peft", "accelerate", "safetensors", "ctranslate2",
    "faster-whisper", "decord", "av", "soundfile", "faiss-cpu", "numpy", "typer", "rich",
)  # fmt: skip


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in KEY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _writable_dir_check(label: str, get_dir) -> Check:  # noqa: ANN001 - a paths.* function
    try:
        path = get_dir()
        probe = path / ".damo-write-test"
        probe.write_text("ok")
        probe.unlink()
        return Check(label, True, str(path))
    except OSError as err:
        return Check(label, False, f"not writable: {err}", "set DAMO_HOME to a writable folder")


def collect_checks(card_name: str, device: str) -> list[Check]:
    from damo_cli import __version__, paths
    from damo_cli.cards import load_card
    from damo_cli.device import resolve_device
    from damo_cli.encoders.readiness import card_status
    from damo_cli.errors import DamoError

    checks = [Check("damo", True, f"{__version__} on Python {platform.python_version()} ({sys.platform})")]
    versions = _versions()
    missing = [name for name, version in versions.items() if version is None]
    checks.append(
        Check(
            "libraries",
            not missing,
            ", ".join(f"{k} {v}" for k, v in versions.items() if v)
            if not missing
            else f"missing: {', '.join(missing)}",
            None if not missing else "run ./scripts/setup.sh (or pip install -c constraints.txt -e .)",
        )
    )
    try:
        resolved = resolve_device(device)
        import torch

        detail = resolved
        if resolved.startswith("cuda"):
            detail += f" ({torch.cuda.get_device_name(0)})"
        detail += f", torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        checks.append(Check("device", True, detail))
    except DamoError as err:
        checks.append(Check("device", False, str(err), "use --device cpu"))
    try:
        import imageio_ffmpeg

        checks.append(Check("ffmpeg", True, imageio_ffmpeg.get_ffmpeg_exe()))
    except (ImportError, RuntimeError) as err:
        checks.append(Check("ffmpeg", False, str(err), "pip install imageio-ffmpeg"))
    checks.append(_writable_dir_check("cache dir", paths.cache_dir))
    checks.append(_writable_dir_check("data dir", paths.data_dir))
    if os.environ.get("DAMO_HOME"):
        checks.append(Check("DAMO_HOME", True, os.environ["DAMO_HOME"]))
    try:
        card = load_card(card_name)
        for status in card_status(card):
            checks.append(Check(f"{card.name} {status.role}", status.ready, status.detail, status.fix))
        checks.append(_trained_weights_check(card))
        checks.extend(_derived_cache_checks(card))
    except DamoError as err:
        checks.append(Check(f"model {card_name}", False, str(err), "damo models list"))
    checks.extend(_pulled_checks())
    return checks


def _pulled_checks() -> list[Check]:
    """Every card `damo models pull` fetched: its files in the HF cache re-hashed against the lock file, offline."""
    from damo_cli.errors import DamoError
    from damo_cli.hub import load_pulled_card, lock_path, pulled_cards, verify_pulled

    try:
        names = pulled_cards()
    except DamoError as err:
        return [Check("pulled models", False, str(err), f"delete {lock_path()} and pull again")]
    checks = []
    for name in names:
        try:
            files = verify_pulled(load_pulled_card(name))
        except DamoError as err:
            checks.append(Check(f"{name} pulled files", False, str(err), f"damo models pull {name}"))
            continue
        size = sum(f.size for f in files) / 1e6
        detail = f"{len(files)} files, {size:.1f} MB at pinned revisions, sha256 verified offline against {lock_path()}"
        checks.append(Check(f"{name} pulled files", True, detail))
    return checks


def _trained_weights_check(card) -> Check:  # noqa: ANN001 - ModelCard
    """The DaMO weights the card ships (its [weights] table): present and matching their sha256."""
    from damo_cli.errors import DamoError
    from damo_cli.model.checkpoint import read_manifest
    from damo_cli.model.load import resolve_model, verify_weights

    name = f"{card.name} DaMO weights"
    try:
        _, folder, expected = resolve_model(card.name)
        if folder is None:
            return Check(name, True, "none shipped: the fusion weights are random until trained (damo train)")
        verify_weights(card, folder, expected)
        stage = read_manifest(folder).stage
    except DamoError as err:
        fix = "restore the file from the damo checkout or package (git checkout models/), or reinstall damo"
        return Check(name, False, str(err), fix)
    return Check(name, True, f"trained through stage {stage}, sha256 verified ({folder})")


def _derived_cache_checks(card) -> list[Check]:  # noqa: ANN001 - ModelCard
    """Caches built on first use: not a failure when absent, but worth saying (first use is slower)."""
    from damo_cli.encoders.llm import converted_llm_dir
    from damo_cli.encoders.weights import verify_manifest

    if card.backbone("llm").source != "package":
        return []
    folder = converted_llm_dir(card.backbone("llm"))
    if folder.is_dir() and verify_manifest(folder):
        return [Check("LLM cache", True, f"safetensors cache verified ({folder})")]
    return [Check("LLM cache", True, "not built yet: first use converts the GGUF (~20 s); `damo models prepare`")]


def doctor(
    model: str = typer.Option("damo-tiny", "--model", help="Model card to check."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, mps or auto (cuda > mps > cpu)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Check versions, device, state folders and the model's weights; print what is missing and how to fix it."""
    checks = collect_checks(model, device)
    healthy = all(c.ok for c in checks)
    if json_output:
        typer.echo(json.dumps({"ok": healthy, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        table = Table(title="damo doctor", show_lines=False)
        table.add_column("")
        table.add_column("check")
        table.add_column("detail", overflow="fold")
        for check in checks:
            mark = "[green]✓[/]" if check.ok else "[red]✗[/]"
            detail = check.detail if check.ok or not check.fix else f"{check.detail}\n[bold]fix:[/] {check.fix}"
            table.add_row(mark, check.name, detail)
        console = Console()
        console.print(table)
        console.print("[green]all good[/]" if healthy else "[red]some checks failed: see the fixes above[/]")
    if not healthy:
        raise typer.Exit(1)

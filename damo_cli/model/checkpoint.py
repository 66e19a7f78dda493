"""Checkpoints: only the weights a training stage trains, as safetensors, with a manifest that pins them.

A checkpoint is a folder, written atomically (complete or absent):
    weights.safetensors   the stage's trainable tensors (fuser, heads, projector, LoRA; never the frozen backbones)
    manifest.json         card name, the card file's sha256 and text, the architecture fingerprint, the stage, the
                          weights file's sha256 and every tensor's shape and dtype

Loading checks, before touching the model: the manifest is readable and of this format; the card name matches; the
card file's sha256 matches (or, with `allow_card_edits`, only the architecture fingerprint must: a card whose
description or sampling changed still fits); the weights file's sha256; that the tensors are exactly the stage's
trainable set with the model's shapes. Any failure is a one-line DamoError naming what differs.

What a stage's checkpoint holds is part of this format (`CHECKPOINT_GROUPS`): loading verifies it without knowing
anything of training. It equals what each stage trains (damo_cli/training/stages.py; tests/test_checkpoint.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from damo_cli.errors import ChecksumError, ModelError
from damo_cli.integrity import atomic_dir, sha256_file

if TYPE_CHECKING:
    from damo_cli.cards import ModelCard
    from damo_cli.model.damo import DamoModel

FORMAT = "damo-checkpoint"
VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "manifest.json"

# the parameter groups (DamoModel.parameter_groups) a checkpoint of each stage holds
CHECKPOINT_GROUPS: dict[int, tuple[str, ...]] = {
    1: ("fuser", "time_head"),
    2: ("fuser", "time_head", "projector"),
    3: ("fuser", "time_head", "projector", "lora"),
    4: ("fuser", "time_head", "projector", "lora"),
}


def checkpoint_groups(stage: int) -> tuple[str, ...]:
    if stage not in CHECKPOINT_GROUPS:
        raise ModelError(f"unknown training stage {stage}: stages are 1, 2, 3, 4")
    return CHECKPOINT_GROUPS[stage]


def stage_parameter_names(model: DamoModel, stage: int) -> list[str]:
    """Names of the parameters a checkpoint of stage `stage` holds (what that stage trains), in model order."""
    wanted = checkpoint_groups(stage)
    if "lora" in wanted and model.llm is not None and model.config.lora.r > 0 and not model.parameter_groups()["lora"]:
        raise ModelError("stage needs LoRA but the attached LLM has no adapters")
    return [name for group in wanted for name, _ in model.parameter_groups()[group]]


@dataclass(frozen=True)
class Manifest:
    card: str
    card_sha256: str
    card_text: str
    config_fingerprint: str
    stage: int
    weights_sha256: str
    tensors: dict[str, dict[str, Any]]
    extra: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(
            {"format": FORMAT, "version": VERSION, **self.__dict__}, indent=2, sort_keys=True, ensure_ascii=False
        )


def _card_sha256(card: ModelCard) -> str:
    return sha256_file(card.path)


def save_checkpoint(
    model: DamoModel, directory: Path, stage: int, card: ModelCard, extra: dict[str, Any] | None = None
) -> Manifest:
    """Write the parameters stage `stage` trains to `directory` (replaced atomically if it exists)."""
    from safetensors.torch import save_file

    if card.name != model.config.card_name:
        raise ModelError(f"model was built from card '{model.config.card_name}', not '{card.name}'")
    names = set(stage_parameter_names(model, stage))
    tensors = {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if name in names}
    with atomic_dir(Path(directory)) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "damo_stage": str(stage)})
        manifest = Manifest(
            card=card.name,
            card_sha256=_card_sha256(card),
            card_text=card.path.read_text(encoding="utf-8"),
            config_fingerprint=model.config.fingerprint(),
            stage=stage,
            weights_sha256=sha256_file(tmp / WEIGHTS_FILE),
            tensors={n: {"shape": list(t.shape), "dtype": str(t.dtype)[len("torch.") :]} for n, t in tensors.items()},
            extra=dict(extra or {}),
        )
        (tmp / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ModelError(f"{directory} is not a DaMO checkpoint (no {MANIFEST_FILE})") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read checkpoint manifest {path}: {err}") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelError(f"{path} is not a DaMO checkpoint manifest")
    if raw.get("version") != VERSION:
        raise ModelError(f"{path}: checkpoint format version {raw.get('version')} is not supported (need {VERSION})")
    try:
        return Manifest(**{key: raw[key] for key in Manifest.__dataclass_fields__})
    except (KeyError, TypeError) as err:
        raise ModelError(f"{path}: incomplete checkpoint manifest ({err})") from err


def verified_weights(directory: Path, manifest: Manifest) -> Path:
    """The checkpoint's weights file, once its sha256 matches the manifest's."""
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"checkpoint {directory} has no {WEIGHTS_FILE}")
    actual = sha256_file(weights)
    if actual != manifest.weights_sha256:
        raise ChecksumError(
            f"checkpoint weights {weights} are corrupt: "
            f"sha256 {actual[:12]}…, the manifest says {manifest.weights_sha256[:12]}…"
        )
    return weights


def load_checkpoint(model: DamoModel, directory: Path, card: ModelCard, allow_card_edits: bool = False) -> Manifest:
    """Verify the checkpoint in `directory` against `card` and `model`, then copy its tensors into `model`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.card != card.name:
        raise ModelError(f"checkpoint {directory} was trained for card '{manifest.card}', not '{card.name}'")
    if hashlib.sha256(manifest.card_text.encode("utf-8")).hexdigest() != manifest.card_sha256:
        raise ChecksumError(f"checkpoint {directory}: the card copy in its manifest does not match its sha256")
    if manifest.config_fingerprint != model.config.fingerprint():
        raise ModelError(
            f"checkpoint {directory} was trained for a different architecture of '{card.name}' "
            f"(fingerprint {manifest.config_fingerprint[:12]}…, this model {model.config.fingerprint()[:12]}…)"
        )
    if not allow_card_edits and manifest.card_sha256 != _card_sha256(card):
        raise ChecksumError(
            f"checkpoint {directory} was made with a different version of card '{card.name}' "
            f"(sha256 {manifest.card_sha256[:12]}…, now {_card_sha256(card)[:12]}…)"
        )
    weights = verified_weights(directory, manifest)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise ModelError(f"cannot read {weights}: {err}") from err
    expected = stage_parameter_names(model, manifest.stage)
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"checkpoint {directory} does not hold stage {manifest.stage}'s parameters: "
            f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
        )
    params = dict(model.named_parameters())
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise ModelError(
                f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, the model needs {tuple(params[name].shape)}"
            )
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
    return manifest

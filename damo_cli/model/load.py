"""Load a DaMO model with its trained weights: by card name (`damo-tiny`) or from a model directory (`--model PATH`).

Where trained weights live:
- a card that ships weights has a `[weights]` table: `path` (the checkpoint's weights.safetensors, relative to the
  card file's folder; e.g. `damo-tiny/weights.safetensors` beside `models/damo-tiny.toml`) and `sha256`. The file
  must hash to it, then the checkpoint's own manifest is verified (damo_cli/model/checkpoint.py);
- a model directory (what `damo finetune` writes) holds `card.toml` (the card it was trained from) and the checkpoint
  (`weights.safetensors` + `manifest.json`) beside it.
A card without `[weights]` loads seeded random weights and says so (`trained=False`).

`llm=False` skips the language model (search and grounding only need the fuser and the per-time head): the
checkpoint's LoRA tensors are then left aside, everything else is verified and loaded as usual.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from damo_cli.cards import ModelCard, load_card, parse_card
from damo_cli.errors import ChecksumError, ModelError
from damo_cli.integrity import sha256_file
from damo_cli.model.config import DamoConfig
from damo_cli.model.damo import DamoModel

MODEL_DIR_CARD = "card.toml"
UNTRAINED_SEED = 0


@dataclass
class LoadedDamo:
    model: DamoModel
    card: ModelCard
    trained: bool
    checkpoint: Path | None  # the checkpoint folder the weights came from
    stage: int | None  # the training stage of that checkpoint
    fingerprint: str  # architecture + weights: changes whenever either does (caches and reports key on it)


def weights_entry(card: ModelCard) -> dict[str, Any] | None:
    """The card's [weights] table, or None when it ships no trained weights."""
    try:
        raw = tomllib.loads(card.path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ModelError(f"cannot read model card {card.path}: {err}") from err
    entry = raw.get("weights")
    if entry is None:
        return None
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("path"), str)
        or not isinstance(entry.get("sha256"), str)
    ):
        raise ModelError(f"model card {card.path.name}: [weights] needs 'path' and 'sha256'")
    return entry


def resolve_model(model: str | Path) -> tuple[ModelCard, Path | None, str | None]:
    """(card, checkpoint folder or None, the weights' expected sha256 or None) for a card name or a model folder."""
    path = Path(model).expanduser()
    if path.is_dir():
        card_file = path / MODEL_DIR_CARD
        if not card_file.is_file():
            raise ModelError(f"{path} is not a DaMO model directory (no {MODEL_DIR_CARD})")
        return parse_card(card_file), path, None
    card = load_card(str(model))
    entry = weights_entry(card)
    if entry is None:
        return card, None, None
    weights = (card.path.parent / entry["path"]).resolve()
    if not weights.is_file():
        raise ModelError(f"model card {card.name} names weights {weights} that are not installed")
    return card, weights.parent, entry["sha256"]


def verify_weights(card: ModelCard, folder: Path, expected: str | None) -> None:
    """Raise ChecksumError unless the checkpoint's weights hash to the card's sha256 (none given: nothing to check)."""
    from damo_cli.model.checkpoint import WEIGHTS_FILE

    weights = folder / WEIGHTS_FILE
    actual = sha256_file(weights) if weights.is_file() else None
    if expected is not None and actual != expected:
        raise ChecksumError(
            f"weights {weights} do not match model card {card.name}: sha256 {str(actual)[:12]}…, "
            f"the card says {expected[:12]}…"
        )


def load_damo(model: str | Path, device: str = "cpu", llm: bool = True) -> LoadedDamo:
    """The DaMO model of a card name or model directory, trained weights loaded and verified, in eval mode."""
    from damo_cli.model.checkpoint import checkpoint_groups, load_checkpoint, read_manifest

    card, folder, expected = resolve_model(model)
    config = DamoConfig.from_card(card)
    torch.manual_seed(UNTRAINED_SEED)  # untrained parts are still reproducible
    damo = DamoModel(config)
    if folder is None:
        if llm:
            _attach_llm(damo, card, device)
        fingerprint = f"{config.fingerprint()[:12]}-untrained{UNTRAINED_SEED}"
        return LoadedDamo(damo.eval().to(device), card, False, None, None, fingerprint)
    verify_weights(card, folder, expected)
    manifest = read_manifest(folder)
    with_lora = "lora" in checkpoint_groups(manifest.stage) and config.lora.r > 0
    if llm:
        _attach_llm(damo, card, device)
        load_checkpoint(damo, folder, card, allow_card_edits=True)
    else:
        if with_lora:
            _load_without_lora(damo, folder, card)
        else:
            load_checkpoint(damo, folder, card, allow_card_edits=True)
    fingerprint = f"{config.fingerprint()[:12]}-{manifest.weights_sha256[:12]}"
    return LoadedDamo(damo.eval().to(device), card, True, folder, manifest.stage, fingerprint)


def _attach_llm(damo: DamoModel, card: ModelCard, device: str) -> None:
    from damo_cli.encoders.loader import load_backbone

    llm, tokenizer = load_backbone(card, "llm", device)
    damo.attach_llm(llm, tokenizer)


def _load_without_lora(damo: DamoModel, folder: Path, card: ModelCard) -> None:
    """A stage-3/4 checkpoint into a model with no LLM: verified exactly like load_checkpoint, LoRA tensors skipped."""
    from safetensors.torch import load_file

    from damo_cli.model.checkpoint import WEIGHTS_FILE, read_manifest, stage_parameter_names

    manifest = read_manifest(folder)
    if manifest.card != card.name:
        raise ModelError(f"checkpoint {folder} was trained for card '{manifest.card}', not '{card.name}'")
    if manifest.config_fingerprint != damo.config.fingerprint():
        raise ModelError(f"checkpoint {folder} was trained for a different architecture of '{card.name}'")
    weights = folder / WEIGHTS_FILE
    if sha256_file(weights) != manifest.weights_sha256:
        raise ChecksumError(f"checkpoint weights {weights} are corrupt (sha256 differs from its manifest)")
    tensors = load_file(str(weights))
    expected = set(stage_parameter_names(damo, manifest.stage))  # no LLM attached: the LoRA names are not in it
    wanted = {name: t for name, t in tensors.items() if not name.startswith("llm.")}  # LoRA lives under llm.
    if set(wanted) != expected:
        raise ModelError(f"checkpoint {folder} does not hold stage {manifest.stage}'s parameters")
    params = dict(damo.named_parameters())
    with torch.no_grad():
        for name, tensor in wanted.items():
            if tuple(tensor.shape) != tuple(params[name].shape):
                raise ModelError(f"checkpoint tensor {name} has shape {tuple(tensor.shape)}")
            params[name].copy_(tensor)

"""Checkpoints (damo_cli/model/checkpoint.py): only trainable weights, safetensors, pinned to the card; bit-exact."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from damo_cli.cards import ModelCard
from damo_cli.errors import ChecksumError, ModelError
from damo_cli.model.checkpoint import (
    CHECKPOINT_GROUPS,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
    stage_parameter_names,
)
from damo_cli.model.config import DamoConfig
from damo_cli.model.damo import ClipFeatures, Conversation, DamoModel
from damo_cli.model.testing import random_features, tiny_config, tiny_llm, tiny_tokenizer
from damo_cli.training.stages import STAGE_GROUPS, set_trainable

torch.set_num_threads(1)


@pytest.fixture
def card(tmp_path: Path) -> ModelCard:
    path = tmp_path / "tiny-test.toml"
    path.write_text('name = "tiny-test"\n# a stand-in card file: checkpoints pin its sha256\n', encoding="utf-8")
    return ModelCard("tiny-test", "test", True, {}, {}, path)


def build(seed: int, config: DamoConfig | None = None) -> DamoModel:
    torch.manual_seed(seed)
    model = DamoModel(config or tiny_config())
    tok = tiny_tokenizer()
    model.attach_llm(tiny_llm(vocab_size=len(tok), hidden=model.config.llm_hidden, seed=0), tok)  # same frozen LLM
    return model.eval()


def train_a_little(model: DamoModel, stage: int) -> None:
    """Move every trainable tensor away from its initial value (LoRA B starts at zero)."""
    set_trainable(model, stage)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.01)


def outputs(model: DamoModel) -> list[torch.Tensor]:
    clips = ClipFeatures.collate([random_features(model.config, 9, audio_seconds=9.0, seed=s) for s in (1, 2)])
    conversation = Conversation([("user", "when?"), ("assistant", "from 1.0 s to 2.0 s")])
    with torch.no_grad():
        fused = model.fuse(clips)
        prompt = model.clip_prompt(fused)
        inputs = model.lm_inputs(prompt, [conversation, conversation], generation=False)
        logits = model.llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask).logits  # type: ignore[misc]
    return [fused.step_embeddings, fused.clip_embedding, prompt, logits]


@pytest.mark.parametrize("stage", [1, 3])
def test_save_then_load_is_bit_exact(stage: int, card: ModelCard, tmp_path: Path) -> None:
    trained = build(seed=1)
    train_a_little(trained, stage)
    save_checkpoint(trained, tmp_path / "ckpt", stage, card, extra={"step": 10})
    fresh = build(seed=2)
    names = stage_parameter_names(fresh, stage)
    before = {n: p.detach().clone() for n, p in fresh.named_parameters()}
    manifest = load_checkpoint(fresh, tmp_path / "ckpt", card)
    assert manifest.stage == stage and manifest.extra == {"step": 10}
    trained_params, fresh_params = dict(trained.named_parameters()), dict(fresh.named_parameters())
    for name in names:
        assert torch.equal(fresh_params[name], trained_params[name]), name
    for name, value in before.items():
        if name not in names:  # what the stage does not train is untouched by loading
            assert torch.equal(fresh_params[name], value), name
    if stage == 3:
        for ours, theirs in zip(outputs(fresh), outputs(trained), strict=True):
            assert torch.equal(ours, theirs)


def test_only_the_stage_trainable_tensors_are_saved_as_safetensors(card: ModelCard, tmp_path: Path) -> None:
    from safetensors import safe_open

    model = build(seed=1)
    for stage in (1, 2, 3):
        save_checkpoint(model, tmp_path / f"s{stage}", stage, card)
        with safe_open(str(tmp_path / f"s{stage}" / WEIGHTS_FILE), framework="pt") as handle:
            keys = set(handle.keys())
        assert keys == set(stage_parameter_names(model, stage))
        assert not any(k.startswith("llm.") and "lora_" not in k for k in keys)  # never the frozen LLM
        assert any(k.startswith("projector.") for k in keys) == (stage >= 2)
        assert any("lora_" in k for k in keys) == (stage >= 3)
        manifest = json.loads((tmp_path / f"s{stage}" / MANIFEST_FILE).read_text())
        assert manifest["card"] == "tiny-test" and manifest["stage"] == stage
        assert set(manifest["tensors"]) == keys
    raw = (tmp_path / "s1" / WEIGHTS_FILE).read_bytes()
    assert not raw.startswith(b"\x80")  # not a pickle
    assert sorted(p.name for p in (tmp_path / "s1").iterdir()) == [MANIFEST_FILE, WEIGHTS_FILE]


def test_corrupt_weights_are_refused(card: ModelCard, tmp_path: Path) -> None:
    model = build(seed=1)
    save_checkpoint(model, tmp_path / "ckpt", 2, card)
    weights = tmp_path / "ckpt" / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ChecksumError, match="corrupt"):
        load_checkpoint(model, tmp_path / "ckpt", card)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # nothing was half-loaded


def test_card_mismatches_are_refused(card: ModelCard, tmp_path: Path) -> None:
    model = build(seed=1)
    save_checkpoint(model, tmp_path / "ckpt", 1, card)
    other = dataclasses.replace(card, name="damo-other")
    with pytest.raises(ModelError, match="trained for card"):
        load_checkpoint(model, tmp_path / "ckpt", other)
    card.path.write_text(card.path.read_text() + "# edited\n", encoding="utf-8")
    with pytest.raises(ChecksumError, match="different version of card"):
        load_checkpoint(model, tmp_path / "ckpt", card)
    load_checkpoint(model, tmp_path / "ckpt", card, allow_card_edits=True)  # same architecture: allowed on request


def test_architecture_mismatch_is_refused(card: ModelCard, tmp_path: Path) -> None:
    save_checkpoint(build(seed=1), tmp_path / "ckpt", 1, card)
    wider = build(seed=1, config=tiny_config(width=48, conv_groups=4))
    with pytest.raises(ModelError, match="different architecture"):
        load_checkpoint(wider, tmp_path / "ckpt", card, allow_card_edits=True)


def test_tampered_manifest_is_refused(card: ModelCard, tmp_path: Path) -> None:
    model = build(seed=1)
    save_checkpoint(model, tmp_path / "ckpt", 1, card)
    path = tmp_path / "ckpt" / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["stage"] = 3  # claims LoRA and projector tensors it does not hold
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="does not hold stage 3"):
        load_checkpoint(model, tmp_path / "ckpt", card)
    path.write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        read_manifest(tmp_path / "ckpt")
    with pytest.raises(ModelError, match="not a DaMO checkpoint"):
        read_manifest(tmp_path / "nowhere")


def test_a_stage_checkpoint_holds_exactly_what_the_stage_trains() -> None:
    # the checkpoint format (model side) and the training policy (training side) name the same groups
    assert CHECKPOINT_GROUPS == STAGE_GROUPS


def test_saving_again_replaces_the_checkpoint_atomically(card: ModelCard, tmp_path: Path) -> None:
    model = build(seed=1)
    save_checkpoint(model, tmp_path / "ckpt", 1, card)
    train_a_little(model, 1)
    save_checkpoint(model, tmp_path / "ckpt", 1, card)
    fresh = build(seed=3)
    load_checkpoint(fresh, tmp_path / "ckpt", card)
    assert torch.equal(fresh.blocks[0].visual.ffn[0].weight, model.blocks[0].visual.ffn[0].weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpt", card.path.name])  # no temporaries left

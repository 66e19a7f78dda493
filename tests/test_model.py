"""The DaMO model (damo_cli/model/): shapes, masking, time, order, training stages, windows, prompts, cards."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from damo_cli.cards import ModelCard, list_cards, load_card
from damo_cli.errors import DamoError, ModelError
from damo_cli.model.config import DamoConfig
from damo_cli.model.damo import (
    VIDEO_PLACEHOLDER,
    ClipFeatures,
    Conversation,
    DamoModel,
    TranscriptLine,
    adaptive_pool_bins,
    plan_windows,
    render_segments,
)
from damo_cli.model.hub_towers import VisionTower, WhisperTower, build_backbone
from damo_cli.model.params import count_parameters
from damo_cli.model.testing import INST_TEMPLATE, random_features, tiny_config, tiny_llm, tiny_tokenizer
from damo_cli.training.stages import STAGE_GROUPS, set_trainable

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return tiny_tokenizer()


def build(config: DamoConfig | None = None, seed: int = 0, llm: bool = False, tokenizer=None) -> DamoModel:  # noqa: ANN001
    torch.manual_seed(seed)
    model = DamoModel(config or tiny_config()).eval()
    if llm:
        tok = tokenizer or tiny_tokenizer()
        model.attach_llm(tiny_llm(vocab_size=len(tok), hidden=model.config.llm_hidden, seed=seed), tok)
        model.eval()
    return model


def features_as(clip: ClipFeatures, dtype: torch.dtype) -> ClipFeatures:
    """The clip with its visual and audio features in `dtype` (times and masks as they are)."""
    assert clip.audio_states is not None
    return dataclasses.replace(
        clip,
        visual_global=clip.visual_global.to(dtype),
        visual_local=clip.visual_local.to(dtype),
        audio_states=clip.audio_states.to(dtype),
    )


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=1e-4))


# ---------------------------------------------------------------------------------------------------------- shapes


def test_damo_tiny_shapes_end_to_end(tokenizer) -> None:  # noqa: ANN001
    """damo-tiny's real sizes: 1280-d 7x7 EfficientNet maps, 1500 x 512 Whisper-base states, a 576-wide LLM."""
    config = DamoConfig.from_card(load_card("damo-tiny"))
    model = build(config, llm=True, tokenizer=tokenizer)
    frames = 21  # odd on purpose: ceil(21 / 2) = 11 steps
    clip = random_features(config, frames, fps=1.0, audio_seconds=frames)
    assert clip.audio_states is not None and clip.audio_states.shape == (1, 1, 1500, 512)
    with torch.no_grad():
        fused = model.fuse(clip)
        prompt = model.clip_prompt(fused)
    steps = math.ceil(frames / config.conv_stride)
    assert fused.visual_content.shape == (1, steps, 4, 256)
    assert fused.audio_content.shape == (1, 30, 256)
    assert fused.step_embeddings.shape == (1, steps, 384)
    assert torch.allclose(fused.step_embeddings.norm(dim=-1), torch.ones(1, steps))
    assert fused.fusion_tokens.shape == (1, 16, 256)
    assert fused.clip_embedding.shape == (1, 384)
    assert prompt.shape == (1, 16, 576)
    answer = model.generate(prompt, [Conversation.ask("When does the rabbit appear?")], max_new_tokens=3)
    assert answer.new_tokens >= 1 and len(answer.texts) == 1
    assert answer.prefill_seconds > 0 and answer.decode_seconds >= 0


def _hub_features(tower: VisionTower, whisper: WhisperTower, frames: int, seconds: float) -> ClipFeatures:
    torch.manual_seed(1)
    size = tower.tower.config.image_size
    global_, local = tower(torch.randn(frames, 3, size, size))
    windows = math.ceil(seconds / 30.0)
    mels = torch.randn(windows, whisper.encoder.config.num_mel_bins, 2 * whisper.states)
    real = torch.tensor([min(30.0, seconds - 30.0 * w) for w in range(windows)])
    states, mask = whisper(mels, real)
    times = (torch.arange(frames, dtype=torch.float32) + 0.5) * (seconds / frames)
    starts = torch.arange(windows, dtype=torch.float32)[None] * 30.0
    return ClipFeatures(global_[None], local[None], times[None], None, states[None], mask[None], starts)


@pytest.mark.parametrize(
    ("vision", "llm_class", "template"),
    [("CLIPVisionModel", "MistralForCausalLM", INST_TEMPLATE), ("SiglipVisionModel", "Qwen2ForCausalLM", None)],
)
def test_hub_card_classes_with_tiny_random_configs(vision: str, llm_class: str, template: str | None) -> None:
    """The transformers classes the hub cards name, tiny and random: towers -> features -> DaMO -> LLM answer."""
    torch.manual_seed(0)
    vision_arch = {
        "class": vision, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "image_size": 32, "patch_size": 8,
    }  # fmt: skip
    audio_arch = {
        "class": "WhisperEncoder", "d_model": 24, "encoder_layers": 2, "encoder_attention_heads": 4,
        "encoder_ffn_dim": 48, "num_mel_bins": 80, "max_source_positions": 60,
    }  # fmt: skip
    tower = VisionTower(build_backbone(vision_arch).eval())
    whisper = WhisperTower(build_backbone(audio_arch).eval())
    assert type(tower.tower).__name__ == vision and tower.grid == 4
    clip = _hub_features(tower, whisper, frames=6, seconds=40.0)
    assert clip.visual_local.shape == (1, 6, 16, 32) and clip.visual_global.shape == (1, 6, 32)
    assert clip.audio_states is not None and clip.audio_states.shape == (1, 2, 60, 24)
    assert clip.audio_mask is not None and int(clip.audio_mask[0, 1].sum()) == 20  # 10 s of 30 s are real
    config = tiny_config(visual_dim=32, visual_grid=4, audio_dim=24, audio_states_per_window=60, llm_hidden=48)
    tok = tiny_tokenizer(template) if template else tiny_tokenizer()
    torch.manual_seed(0)
    model = DamoModel(config).eval()
    model.attach_llm(tiny_llm(llm_class, vocab_size=len(tok), hidden=48), tok)
    assert type(model.llm.get_base_model()).__name__ == llm_class  # type: ignore[union-attr]
    with torch.no_grad():
        fused = model.fuse(clip)
        prompt = model.clip_prompt(fused)
    assert fused.step_embeddings.shape == (1, 3, config.text_dim)
    assert prompt.shape == (1, config.prompt_tokens, 48)
    answer = model.generate(prompt, [Conversation.ask("what happens?")], max_new_tokens=2)
    assert len(answer.texts) == 1


def test_vision_tower_global_and_local() -> None:
    torch.manual_seed(0)
    clip_arch = {
        "class": "CLIPVisionModel", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "image_size": 16, "patch_size": 8,
    }  # fmt: skip
    tower = VisionTower(build_backbone(clip_arch).eval())
    pixels = torch.randn(3, 3, 16, 16)
    global_, local = tower(pixels)
    raw = tower.tower(pixel_values=pixels)
    assert torch.equal(local, raw.last_hidden_state[:, 1:])  # CLS dropped from the local tokens
    assert torch.equal(global_, raw.pooler_output)  # post-LayerNorm CLS
    with pytest.raises(ModelError):
        VisionTower(torch.nn.Linear(2, 2))


# -------------------------------------------------------------------------------------------- masking and padding


def test_padding_does_not_change_real_outputs() -> None:
    config = tiny_config()
    model = build(config)
    short = random_features(config, 7, audio_seconds=12.0, seed=1)  # 1 audio window, 12 s of it real
    long = random_features(config, 16, audio_seconds=50.0, seed=2)  # 2 audio windows
    with torch.no_grad():
        alone = model.fuse(short)
        batch = model.fuse(ClipFeatures.collate([short, long]))
        long_alone = model.fuse(long)
        prompt_alone, prompt_batch = model.clip_prompt(alone), model.clip_prompt(batch)
    steps = alone.step_mask.shape[1]
    assert alone.step_mask.all() and batch.step_mask[0, :steps].all() and not batch.step_mask[0, steps:].any()
    for name in ("step_features", "step_embeddings", "step_times", "step_spans"):
        assert close(getattr(batch, name)[0, :steps], getattr(alone, name)[0]), name
        assert close(getattr(batch, name)[1], getattr(long_alone, name)[0]), name
    assert close(batch.fusion_tokens[0], alone.fusion_tokens[0])
    assert close(batch.clip_embedding[0], alone.clip_embedding[0])
    assert close(prompt_batch[0], prompt_alone[0])


def test_masked_audio_is_never_read() -> None:
    """Missing audio is masked, not zeros pretending to be sound: masked content cannot change any output."""
    config = tiny_config()
    model = build(config)
    clip = random_features(config, 10, audio_seconds=8.0, seed=3)
    assert clip.audio_states is not None and clip.audio_mask is not None
    noisy = dataclasses.replace(clip, audio_states=clip.audio_states.clone())
    noisy.audio_states[~clip.audio_mask] = torch.randn(int((~clip.audio_mask).sum()), config.audio_dim) * 100
    silent = dataclasses.replace(clip, audio_states=torch.zeros_like(clip.audio_states))  # zeros = "silence"
    no_track = dataclasses.replace(clip, audio_states=None, audio_mask=None, audio_starts=None)
    all_masked = dataclasses.replace(noisy, audio_mask=torch.zeros_like(clip.audio_mask))
    with torch.no_grad():
        base, with_noise = model.fuse(clip), model.fuse(noisy)
        with_silence, without, masked = model.fuse(silent), model.fuse(no_track), model.fuse(all_masked)
    assert torch.equal(base.step_features, with_noise.step_features)  # content past the real audio: unread
    assert torch.equal(base.fusion_tokens, with_noise.fusion_tokens)
    assert close(without.step_features, masked.step_features)  # no track == a track that is all masked
    assert close(without.fusion_tokens, masked.fusion_tokens)
    assert not close(base.step_features, without.step_features, atol=1e-3)  # real audio does count...
    assert not close(with_silence.fusion_tokens, without.fusion_tokens, atol=1e-3)  # ...and zeros are not "no audio"
    with torch.no_grad():  # with no audio, nothing of the audio branch can reach an output
        model.audio_queries.add_(torch.randn_like(model.audio_queries))
        for param in model.audio_residual.parameters():
            param.add_(torch.randn_like(param))
        changed = model.fuse(no_track)
    assert torch.equal(changed.step_features, without.step_features)
    assert torch.equal(changed.fusion_tokens, without.fusion_tokens)


def test_audio_pooling_matches_adaptive_avg_pool_when_all_real() -> None:
    states = torch.randn(2, 3, 60, 5)
    bins = adaptive_pool_bins(60, 7)
    pooled = torch.einsum("ls,bwsd->bwld", bins, states) / bins.sum(1)[:, None]
    reference = torch.nn.functional.adaptive_avg_pool1d(states.reshape(6, 60, 5).transpose(1, 2), 7)
    assert close(pooled.reshape(6, 7, 5), reference.transpose(1, 2))


# -------------------------------------------------------------------------------------------------------- time


def test_shifting_time_changes_time_embeddings_not_content() -> None:
    config = tiny_config()
    model = build(config)
    clip = random_features(config, 12, audio_seconds=12.0, seed=4)
    shift = 3600.0
    assert clip.audio_starts is not None
    moved = dataclasses.replace(clip, frame_times=clip.frame_times + shift, audio_starts=clip.audio_starts + shift)
    with torch.no_grad():
        a, b = model.fuse(clip), model.fuse(moved)
    assert torch.equal(a.visual_content, b.visual_content)
    assert torch.equal(a.audio_content, b.audio_content)
    assert not close(a.visual_time, b.visual_time, atol=1e-2)
    assert not close(a.audio_time, b.audio_time, atol=1e-2)
    assert close(b.step_times, a.step_times + shift) and close(b.step_spans, a.step_spans + shift)
    assert not close(a.step_features, b.step_features, atol=1e-3)  # absolute time reaches the outputs


def test_time_embedding_resolves_sub_second_differences_after_an_hour() -> None:
    model = build()
    times = torch.tensor([3600.0, 3600.5, 3601.0])
    emb = model.time_embed(times)
    assert (emb[1] - emb[0]).norm() > 0.5 and (emb[2] - emb[1]).norm() > 0.5


def test_reversing_frames_moves_per_time_outputs_with_them() -> None:
    """A still shot with one event (frames 4-5 = step 2 of 8); reversed, the event is at frames 10-11 = step 5.

    Each step's output is compared with the same step of the still shot without the event: the step that moved most
    must be the event's step, before and after reversal; and outputs are not simply reversed (time is absolute).
    """
    config = tiny_config()
    model = build(config)
    generator = torch.Generator().manual_seed(5)
    frames, grid = 16, config.visual_grid**2
    times = (torch.arange(frames, dtype=torch.float32) + 0.5)[None]
    still_global = torch.randn(1, 1, config.visual_dim, generator=generator).expand(1, frames, -1).clone()
    still_local = torch.randn(1, 1, grid, config.visual_dim, generator=generator).expand(1, frames, -1, -1).clone()
    event_global, event_local = still_global.clone(), still_local.clone()
    event_global[:, 4:6] = torch.randn(1, 2, config.visual_dim, generator=generator) * 3
    event_local[:, 4:6] = torch.randn(1, 2, grid, config.visual_dim, generator=generator) * 3
    with torch.no_grad():
        still = model.fuse(ClipFeatures(still_global, still_local, times)).step_features[0]
        forward = model.fuse(ClipFeatures(event_global, event_local, times)).step_features[0]
        backward = model.fuse(ClipFeatures(event_global.flip(1), event_local.flip(1), times)).step_features[0]
    assert int((forward - still).norm(dim=-1).argmax()) == 2
    assert int((backward - still).norm(dim=-1).argmax()) == 5
    assert not close(forward, backward.flip(0), atol=1e-3)


def test_frames_out_of_time_order_are_refused() -> None:
    config = tiny_config()
    clip = random_features(config, 4)
    with pytest.raises(DamoError):
        ClipFeatures(clip.visual_global, clip.visual_local, clip.frame_times.flip(1))


# ------------------------------------------------------------------------------------------- training stages


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_only_the_stage_groups_get_gradients(stage: int, tokenizer) -> None:  # noqa: ANN001
    model = build(llm=True, tokenizer=tokenizer).train()
    counts = set_trainable(model, stage)
    assert set(counts) == set(STAGE_GROUPS[stage])
    clips = ClipFeatures.collate([random_features(model.config, 8, audio_seconds=8.0, seed=s) for s in (6, 7)])
    fused = model.fuse(clips)
    text = torch.nn.functional.normalize(torch.randn(2, model.config.text_dim), dim=-1)
    scale = model.time_head.logit_scale.exp()
    loss = torch.nn.functional.cross_entropy(scale * fused.clip_embedding @ text.T, torch.arange(2))
    loss = loss + (scale * fused.step_embeddings @ text[0]).mean()
    if stage >= 2:
        conversation = Conversation([("user", "when?"), ("assistant", "from 1.0 s to 3.0 s")])
        loss = loss + model.lm_loss(model.clip_prompt(fused), [conversation, conversation])
    loss.backward()
    groups = model.parameter_groups()
    assert groups["lora"] and groups["llm"]
    for group, params in groups.items():
        trained = group in STAGE_GROUPS[stage]
        for name, param in params:
            assert param.requires_grad == trained, name
            assert (param.grad is not None) == trained, name
        if trained:
            assert any(bool(param.grad.abs().sum() > 0) for _, param in params), group  # type: ignore[union-attr]


# -------------------------------------------------------------------------------------------------- long videos


def test_windows_plan() -> None:
    assert plan_windows(45.0, 60.0, 10.0) == [(0.0, 45.0)]
    assert plan_windows(200.0, 60.0, 10.0) == [(0.0, 60.0), (50.0, 110.0), (100.0, 160.0), (140.0, 200.0)]


def test_long_video_windows_stitch_by_absolute_time() -> None:
    config = tiny_config()
    model = build(config)
    video = random_features(config, 200, fps=1.0, audio_seconds=200.0, seed=8)  # frames at 0.5, 1.5, ..., 199.5 s
    with torch.no_grad():
        stitched = model.fuse_video(video, windows_per_batch=3)
        third = video.window(100.0, 160.0, config.audio_window_seconds)
        assert third is not None
        alone = model.fuse(third)
    # 4 windows (0-60, 50-110, 100-160, 140-200); every 2-frame step exactly once, at its true time
    assert stitched.window_spans.tolist() == [[0.0, 60.0], [50.0, 110.0], [100.0, 160.0], [140.0, 200.0]]
    assert stitched.step_times.tolist() == [float(t) for t in range(1, 200, 2)]
    spans = stitched.step_spans
    assert torch.equal(spans[1:, 0], spans[:-1, 1]) and spans[0, 0] == 0.0 and spans[-1, 1] == 200.0
    # steps owned by window 3 (105 <= t < 150) are that window's own outputs, computed with absolute times
    assert alone.step_times[0, 0] == 101.0
    own = (stitched.step_times >= 105) & (stitched.step_times < 150)
    in_alone = (alone.step_times[0] >= 105) & (alone.step_times[0] < 150)
    assert close(stitched.step_features[own], alone.step_features[0, in_alone])
    assert close(stitched.fusion_tokens[2], alone.fusion_tokens[0])
    prompt = model.video_prompt(stitched)
    assert prompt.shape == (1, config.prompt_tokens, config.llm_hidden)


def test_long_video_fuses_the_same_from_fp16_features_in_any_batch_size() -> None:
    # The feature cache stores fp16 and the analyser hands it to the model as it is (cast per window, inside `fuse`),
    # and windows are cut a batch at a time: neither may change what a user's video fuses to.
    config = tiny_config()
    model = build(config)
    video = random_features(config, 200, fps=1.0, audio_seconds=200.0, seed=10)
    half = features_as(video, torch.float16)
    as_fp32 = features_as(half, torch.float32)
    with torch.no_grad():
        from_half = model.fuse_video(half, windows_per_batch=8)
        from_float = model.fuse_video(as_fp32, windows_per_batch=8)
        one_by_one = model.fuse_video(half, windows_per_batch=1)
    assert torch.equal(from_half.step_embeddings, from_float.step_embeddings)
    assert torch.equal(from_half.step_times, one_by_one.step_times)
    assert close(from_half.step_embeddings, one_by_one.step_embeddings)
    assert from_half.window_spans.tolist() == one_by_one.window_spans.tolist()


def test_short_video_is_one_window() -> None:
    config = tiny_config()
    model = build(config)
    video = random_features(config, 30, audio_seconds=30.0, seed=9)
    with torch.no_grad():
        stitched, direct = model.fuse_video(video), model.fuse(video)
    assert close(stitched.step_features, direct.step_features[0])
    assert torch.equal(stitched.step_times, direct.step_times[0])


# ------------------------------------------------------------------------------------------------------- prompts


def test_prompt_places_video_then_transcript_then_question(tokenizer) -> None:  # noqa: ANN001
    lines = [TranscriptLine(3.0, 5.2, "ask not"), TranscriptLine(0.0, 2.5, "and so my fellow Americans")]
    conversation = Conversation.ask("When is 'ask not' said?", lines)
    segments = render_segments(tokenizer, conversation, "Be brief.", 200, generation=True)
    text = "".join(s.text for s in segments)
    assert text.index("Be brief.") < text.index("<|im_start|>user") < text.index(VIDEO_PLACEHOLDER)
    assert text.index(VIDEO_PLACEHOLDER) < text.index("Transcript:") < text.index("When is")
    assert text.index("from 0.0 s to 2.5 s: and so my") < text.index("from 3.0 s to 5.2 s: ask not")
    assert text.endswith("<|im_start|>assistant\n")
    short = "".join(s.text for s in render_segments(tokenizer, conversation, "", 70, generation=True))
    assert "from 0.0 s to 2.5 s" in short and "ask not\n" not in short  # whole lines within the token budget
    assert "Transcript:" not in "".join(s.text for s in render_segments(tokenizer, conversation, "", 5, True))


def test_template_without_system_role_gets_it_in_the_user_turn() -> None:
    tok = tiny_tokenizer(INST_TEMPLATE)
    segments = render_segments(tok, Conversation.ask("what?"), "Be brief.", 0, generation=True)
    assert "".join(s.text for s in segments) == f"<s>[INST] Be brief.\n\n{VIDEO_PLACEHOLDER}\nwhat? [/INST]"


def test_labels_cover_exactly_the_assistant_turns(tokenizer) -> None:  # noqa: ANN001
    model = build(llm=True, tokenizer=tokenizer)
    turns = [("user", "when?"), ("assistant", "from 1.0 s to 3.0 s"), ("user", "and then?"), ("assistant", "at 5 s")]
    prompt = torch.zeros(1, model.config.prompt_tokens, model.config.llm_hidden)
    inputs = model.lm_inputs(prompt, [Conversation(turns)], generation=False)
    labels = inputs.labels[0]
    kept = tokenizer.decode(labels[labels >= 0].tolist())
    assert kept == "from 1.0 s to 3.0 s<|im_end|>\nat 5 s<|im_end|>\n"
    assert inputs.inputs_embeds.shape[1] == labels.shape[0]


def test_generation_with_kv_cache_matches_recomputing(tokenizer) -> None:  # noqa: ANN001
    model = build(llm=True, tokenizer=tokenizer)
    clips = ClipFeatures.collate([random_features(model.config, n, seed=n) for n in (4, 9)])
    conversations = [Conversation.ask("what?"), Conversation.ask("when does the long thing happen?")]
    with torch.no_grad():
        prompt = model.clip_prompt(model.fuse(clips))
        cached = model.generate(prompt, conversations, max_new_tokens=6)
        inputs = model.lm_inputs(prompt, conversations, generation=True)
        embeds, mask = inputs.inputs_embeds, inputs.attention_mask
        embed = model.llm.get_input_embeddings()  # type: ignore[union-attr]
        tokens = []
        for _ in range(cached.new_tokens):  # greedy without a cache: recompute everything each step
            positions = (mask.cumsum(-1) - 1).clamp_min(0)
            logits = model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits  # type: ignore[misc]
            token = logits[:, -1].argmax(-1)
            tokens.append(token)
            embeds = torch.cat([embeds, embed(token)[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones(2, 1)], dim=1)
    reference = torch.stack(tokens, 1).tolist()
    eos = tokenizer.eos_token_id
    expected = [
        tokenizer.decode(r[: r.index(eos)] if eos in r else r, skip_special_tokens=True).strip() for r in reference
    ]
    assert cached.texts == expected


# ------------------------------------------------------------------------------------------- cards and counts


def test_every_card_has_a_valid_model_section() -> None:
    names = {card.name: DamoConfig.from_card(card) for card in list_cards()}
    assert {"damo-tiny", "damo-base", "damo-7b"} <= set(names)
    paper = names["damo-7b"]
    assert (paper.width, paper.blocks, paper.visual_queries, paper.audio_queries, paper.fusion_tokens) == (
        768, 4, 192, 64, 128,
    )  # fmt: skip
    assert (paper.lora.r, paper.lora.alpha) == (32, 64)
    assert (paper.training.learning_rate, paper.training.weight_decay) == (1e-4, 0.02)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"conv_kernel": 4}, "odd"),
        ({"heads": 3}, "heads"),
        ({"widht": 3}, "unknown keys"),
        ({"lora": {"rank": 3}}, "unknown keys"),
        ({"video": {"window_seconds": "long"}}, "must be float"),
        ({"visual_pool_grid": 9}, "grid"),
    ],
)
def test_bad_model_sections_are_refused(change: dict, message: str, tmp_path: Path) -> None:
    card = load_card("damo-tiny")
    model = json.loads(json.dumps(card.model))
    for key, value in change.items():
        if isinstance(value, dict):
            model.setdefault(key, {}).update(value)
        else:
            model[key] = value
    bad = ModelCard(card.name, card.description, card.offline, card.backbones, model, card.path)
    with pytest.raises(ModelError, match=message):
        DamoConfig.from_card(bad)


def test_parameter_counts_on_the_meta_device() -> None:
    seven = count_parameters(load_card("damo-7b"))
    parts = seven.components
    assert parts["llm"] == 7_241_732_096  # Mistral-7B
    assert 300e6 < parts["visual_backbone"] < 310e6  # CLIP ViT-L/14 vision tower
    assert 85e6 < parts["audio_backbone"] < 90e6  # Whisper-small encoder
    assert 50e6 < parts["fuser"] + parts["projector"] < 250e6
    assert 7.5e9 < seven.video_llm_total < 8.0e9  # 7.24B + 0.30B + 0.09B + fuser + LoRA
    per_layer = 2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336)  # in + out of q, o; k, v; gate, up, down
    assert parts["lora"] == 32 * 32 * per_layer  # r x layers x (in + out)
    stages = seven.trainable_by_stage
    assert stages[1] < stages[2] < stages[3] == stages[4] < 0.05 * seven.total
    tiny = count_parameters(load_card("damo-tiny"))
    assert tiny.components["llm"] == 134_515_008  # SmolLM2-135M as loaded from its GGUF
    assert tiny.components["fuser"] < 10e6  # trains on a 2-core CPU


def test_models_info_cli_json() -> None:
    from typer.testing import CliRunner

    from damo_cli.cli import app

    result = CliRunner().invoke(app, ["models", "info", "damo-7b", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["name"] == "damo-7b" and payload["model"]["width"] == 768
    assert 7.5e9 < payload["parameters"]["video_llm_total"] < 8.0e9
    assert set(payload["parameters"]["trainable_by_stage"]) == {"1", "2", "3", "4"}


def test_features_from_encoder_outputs() -> None:
    """Repeated frame timestamps are kept once; an audio window's `valid` leading states are the real ones."""
    config = tiny_config()

    @dataclasses.dataclass
    class Window:
        start: float
        states: torch.Tensor
        valid: int

    global_, local = torch.randn(5, config.visual_dim), torch.randn(5, config.visual_grid**2, config.visual_dim)
    windows = [Window(0.0, torch.randn(60, config.audio_dim), 60), Window(30.0, torch.randn(60, config.audio_dim), 14)]
    clip = ClipFeatures.from_encoders(global_, local, [0.0, 0.5, 0.5, 1.0, 1.5], windows)
    assert clip.frame_times.tolist() == [[0.0, 0.5, 1.0, 1.5]]
    assert torch.equal(clip.visual_global[0], global_[[0, 1, 3, 4]])
    assert clip.audio_mask is not None and clip.audio_mask.sum(-1).tolist() == [[60, 14]]
    assert clip.audio_starts is not None and clip.audio_starts.tolist() == [[0.0, 30.0]]
    no_audio = ClipFeatures.from_encoders(global_, local, [0.0, 0.5, 0.6, 1.0, 1.5])
    assert no_audio.audio_states is None
    with torch.no_grad():
        assert build(config).fuse(clip).step_mask.shape == (1, 2)


def test_bfloat16_weights_keep_times_exact() -> None:
    """Large cards run in bfloat16 on GPUs: times are computed in float64 and never rounded to the weights' dtype."""
    config = tiny_config()
    model = build(config)
    clip = random_features(config, 10, audio_seconds=8.0, start=3600.0, seed=10)
    half = features_as(clip, torch.bfloat16)
    with torch.no_grad():
        full = model.fuse(clip)
        low = model.to(torch.bfloat16).fuse(half)
        assert torch.equal(model.fuse(clip).step_embeddings, low.step_embeddings)  # float32 features are cast
    assert low.step_embeddings.dtype == torch.bfloat16
    assert torch.equal(low.step_times, full.step_times) and low.step_times[0, 0] == 3601.0
    assert (low.step_embeddings.float() - full.step_embeddings).abs().max() < 0.05


def test_ask_on_flat_evidence_answers_with_the_whole_clip_and_says_it_is_unsure() -> None:
    from damo_cli.pipeline.analyse import VideoAnalysis
    from damo_cli.pipeline.ask import evidence_answer, find_moments

    steps = 8
    spans = np.stack([np.arange(steps), np.arange(steps) + 1.0], axis=1)
    query = np.eye(384, dtype=np.float32)[0]
    flat = np.tile(np.eye(384, dtype=np.float32)[1], (steps, 1))  # orthogonal to the query at every step
    no_frames = (np.zeros(0), np.zeros((0, 10), np.int32), np.zeros((0, 10)), np.zeros(0), np.zeros((0, 11)))
    analysis = VideoAnalysis(
        Path("clip.mp4"), 8.0, False, spans, flat, flat, np.zeros((1, 2, 4)), np.zeros((1, 2)), *no_frames
    )
    moments = find_moments(analysis, "a dog jumps", query, np.zeros((0, 384)), trained=True)
    assert moments[0][:2] == (0.0, 8.0)  # nothing singles out a moment: the whole clip, not a guess
    assert "not sure" in evidence_answer(analysis, moments)
    peaked = flat.copy()
    peaked[5] = query  # the head sees the query at 5-6 s
    moments = find_moments(analysis.__class__(**{**vars(analysis), "fused": peaked}), "a dog jumps", query,
                           np.zeros((0, 384)), trained=True)  # fmt: skip
    start, end, confidence = moments[0]
    assert start >= 4.0 and end <= 7.0 and confidence > 0.5


def test_step_means_equal_the_dense_step_weights_they_replaced() -> None:
    # Parity with the (steps x frames) weight matrix the bridge used before (quadratic in the video's length): each
    # step averages the frames inside it, and a step without a frame of its own takes the nearest one.
    from damo_cli.pipeline.zero_shot import step_means

    rng = np.random.default_rng(3)
    frame_times = np.concatenate([np.arange(0.0, 4.0, 0.5), np.arange(9.0, 12.0, 0.5)])  # nothing from 4 s to 9 s
    values = rng.random((len(frame_times), 6)).astype(np.float32)
    starts = np.arange(0.0, 12.0, 0.75)
    spans = np.stack([starts, starts + 0.75], 1)
    inside = (frame_times[None, :] >= spans[:, :1]) & (frame_times[None, :] < spans[:, 1:])
    for row in np.flatnonzero(~inside.any(1)):
        inside[row, np.abs(frame_times - spans[row].mean()).argmin()] = True
    dense = (inside / inside.sum(1, keepdims=True)).astype(np.float32) @ values
    ours = step_means(spans, frame_times, values)
    assert np.allclose(ours, dense, atol=1e-6)
    assert np.array_equal(ours[7], values[np.abs(frame_times - 5.625).argmin()])  # 5.25-6.0 s: the nearest frame
    shuffled = rng.permutation(len(frame_times))
    assert np.allclose(step_means(spans, frame_times[shuffled], values[shuffled]), ours, atol=1e-6)

"""Training: feature cache equivalence, localisation decoder, annotation validation, stage losses, exact resume,
and a finetune smoke test on generated clips with the real damo-tiny backbones."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from damo_cli.data.errors import DataError
from damo_cli.model.checkpoint import stage_parameter_names
from damo_cli.model.damo import ClipFeatures, DamoModel
from damo_cli.model.localize import LocalizeSettings, decode_curve, localize, quoted_phrase, speech_moments
from damo_cli.model.testing import tiny_config, tiny_llm, tiny_tokenizer
from damo_cli.pipeline.features import VideoFeatures, pool_audio_windows
from damo_cli.training.datasets import (
    AnnotationError,
    QueryItem,
    TrainVideo,
    coverage,
    lm_examples,
    read_annotations,
    resolve_videos,
)
from damo_cli.training.trainer import StageData, StageSettings, TextTable, Trainer, make_batch

# --------------------------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def one_thread():  # noqa: ANN201
    """Tiny models run faster on one thread (and much faster on a shared, busy machine); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fake_encoder(dim: int):  # noqa: ANN201 - a callable like TextEncoder.encode
    """Deterministic unit vectors per text (a stand-in for MiniLM in fast tests)."""

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).normal(size=dim)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)

    return encode


EVENTS = {  # signature -> (query, modality)
    "shape:red:circle": ("when does a red circle appear?", "visual"),
    "word:STOP": ("when is the word STOP shown?", "visual"),
    "sound:tone": ("when does a beep sound?", "audio"),
    "sound:noise": ("when is there a burst of static noise?", "audio"),
}


def synthetic_videos(config, count: int, seed: int = 0) -> list[TrainVideo]:  # noqa: ANN001
    """Videos whose features carry each event as a fixed pattern inside its window: learnable, labels known."""
    rng = np.random.default_rng(seed)
    patterns = {sig: torch.from_numpy(np.random.default_rng(i).normal(size=64)).float() for i, sig in enumerate(EVENTS)}
    videos = []
    for index in range(count):
        duration = float(rng.integers(16, 24))
        times = torch.arange(0.25, duration, 0.5)
        n = len(times)
        g = torch.randn(n, config.visual_dim) * 0.5
        local = torch.randn(n, config.visual_pool_grid**2, config.visual_dim) * 0.5
        windows_n = int(np.ceil(duration / config.audio_window_seconds))
        bins = torch.randn(windows_n, config.audio_tokens_per_window, config.audio_dim) * 0.5
        queries, signatures, segments, sounds, overlays = [], {}, [], [], []
        for sig in rng.permutation(list(EVENTS))[:3]:
            query, modality = EVENTS[str(sig)]
            length = float(rng.integers(2, 5))
            start = float(rng.integers(0, int(duration - length)))
            end = start + length
            if modality == "visual":
                inside = (times >= start) & (times < end)
                g[inside] += patterns[str(sig)][: config.visual_dim] * 2
                local[inside] += patterns[str(sig)][: config.visual_dim] * 2
                word = str(sig).split(":")[1] if str(sig).startswith("word") else None
                overlays.append(
                    {"id": f"o{len(overlays)}", "kind": "word" if word else "shape", "word": word, "colour": "red",
                     "shape": "circle", "moving": False, "start": start, "end": end}
                )  # fmt: skip
            else:
                secs = torch.arange(config.audio_tokens_per_window) + 0.5  # one bin per second in window 0
                inside = (secs >= start) & (secs < end)
                bins[0, inside] += patterns[str(sig)][: config.audio_dim] * 2
                sounds.append({"id": f"s{len(sounds)}", "kind": str(sig).split(":")[1], "start": start, "end": end})
            queries.append(QueryItem(f"v{index}-{sig}", query, [(start, end)], modality, str(sig)))
            signatures[str(sig)] = [(start, end)]
        segments.append({"id": "scene-0", "source": "bikes", "start": 0.0, "end": duration})
        plan = {"segments": segments, "overlays": overlays, "speech": [], "sounds": sounds}
        valid = torch.tensor([min(config.audio_states_per_window, int(duration / 30 * 60))] + [0] * (windows_n - 1))
        features = VideoFeatures(
            key=f"synthetic-{index}",
            has_audio=True,
            duration=duration,
            frame_times=times.float(),
            visual_global=g.half(),
            visual_local=local.half(),
            class_index=torch.from_numpy(rng.integers(0, 1000, size=(n, 10))).int(),
            class_prob=torch.full((n, 10), 0.1).half(),
            audio_bins=bins.half(),
            audio_valid=valid.int().clamp_min(1),
            audio_starts=torch.arange(windows_n).float() * config.audio_window_seconds,
        )
        videos.append(
            TrainVideo(f"v{index}", Path(f"v{index}.mp4"), duration, queries, signatures,
                       captions=["a synthetic clip"], transcript=[(1.0, 2.0, "hello there")], plan=plan,
                       features=features)
        )  # fmt: skip
    return videos


@pytest.fixture
def card(tmp_path: Path):  # noqa: ANN201 - a stand-in ModelCard for checkpoints
    path = tmp_path / "tiny-test.toml"
    path.write_text('name = "tiny-test"\n', encoding="utf-8")
    return SimpleNamespace(name="tiny-test", path=path)


def tiny_model(stage: int, seed: int = 0) -> DamoModel:
    torch.manual_seed(seed)
    model = DamoModel(tiny_config(text_dim=12))
    if stage >= 2:
        tok = tiny_tokenizer()
        model.attach_llm(tiny_llm(vocab_size=len(tok), hidden=model.config.llm_hidden, seed=seed), tok)
    return model


def settings(stage: int, steps: int, **extra) -> StageSettings:  # noqa: ANN003
    base = dict(stage=stage, steps=steps, batch_size=4, learning_rate=3e-3, warmup_steps=2, eval_every=1000,
                checkpoint_every=1000, log_every=1)  # fmt: skip
    base.update(extra)
    return StageSettings(**base)


def losses_of(run_dir: Path, stage: int, key: str) -> list[float]:
    lines = (run_dir / f"stage{stage}" / "log.jsonl").read_text().splitlines()
    return [r[key] for r in map(json.loads, lines) if r["split"] == "train" and key in r]


# --------------------------------------------------------------------------------------------------- features


def test_cached_pooled_features_fuse_like_the_encoders_outputs() -> None:
    """Pooled visual tokens and pooled audio bins (what the cache stores) give the model what raw features give."""
    config = tiny_config(visual_grid=4, visual_pool_grid=2, audio_states_per_window=60, audio_tokens_per_window=30)
    torch.manual_seed(0)
    model = DamoModel(config).eval()
    n = 13
    g, local, times = torch.randn(n, 24), torch.randn(n, 16, 24), torch.arange(n) * 0.5 + 0.1
    windows = [
        SimpleNamespace(start=0.0, states=torch.randn(60, 16).numpy(), valid=60),
        SimpleNamespace(start=30.0, states=torch.randn(60, 16).numpy(), valid=17),
    ]
    raw = ClipFeatures.from_encoders(g, local, times, windows)
    bins, valid, starts = pool_audio_windows(windows, 30)
    pooled = torch.nn.functional.adaptive_avg_pool2d(local.reshape(n, 4, 4, 24).permute(0, 3, 1, 2), 2)
    pooled = pooled.flatten(2).transpose(1, 2)
    cached = VideoFeatures("x", 6.5, True, times.float(), g, pooled, torch.zeros(n, 10, dtype=torch.int32),
                           torch.zeros(n, 10), bins.float(), valid, starts)  # fmt: skip
    with torch.no_grad():
        a, b = model.fuse(raw), model.fuse(cached.to_clip(config))
    assert torch.allclose(a.step_embeddings, b.step_embeddings, atol=1e-3)  # fp16 bins: 1e-3, not bit-exact
    assert torch.allclose(a.fusion_tokens, b.fusion_tokens, atol=1e-3)
    assert torch.equal(a.step_spans, b.step_spans)


# --------------------------------------------------------------------------------------------------- localize


def spans(n: int, step: float = 1.0) -> np.ndarray:
    return np.stack([np.arange(n) * step, np.arange(n) * step + step], axis=1)


def test_localize_finds_a_bump_with_sub_step_boundaries() -> None:
    curve = np.full(30, 0.1)
    curve[10:15] = 0.8  # steps 10..14 = [10 s, 15 s)
    flat = LocalizeSettings(smooth_sigma=0.0)
    (start, end, score), *_ = decode_curve(curve, spans(30), k=3, settings=flat)
    assert 9.4 <= start <= 10.6 and 14.4 <= end <= 15.6
    assert score == pytest.approx(0.7)
    # a half-height neighbour moves the crossing (sub-step): the boundary is interpolated, not snapped to a step
    curve[9] = 0.45
    start2, _, _ = decode_curve(curve, spans(30), k=1, settings=flat)[0]
    assert start2 < start - 0.3


def test_localize_ranks_the_stronger_of_two_events_first_and_handles_edges() -> None:
    curve = np.zeros(40)
    curve[0:4] = 0.5  # an event at the very start
    curve[25:30] = 0.9
    moments = decode_curve(curve, spans(40), k=5)
    assert 24.0 <= moments[0][0] <= 26.0 and 29.0 <= moments[0][1] <= 31.0
    assert any(m[0] == 0.0 and 2.5 <= m[1] <= 5.0 for m in moments[1:])
    assert [m[2] for m in moments] == sorted((m[2] for m in moments[1:]), reverse=True)[:0] + [m[2] for m in moments]


def test_localize_flat_or_empty_curves() -> None:
    assert decode_curve(np.full(8, 0.3), spans(8), k=3) == [(0.0, 8.0, 0.0)]
    assert decode_curve(np.zeros(0), np.zeros((0, 2)), k=3) == []
    emb = np.eye(4)[[0, 0, 1, 1, 0, 0]]
    (start, end, _), *_ = localize(emb, spans(6), np.eye(4)[1], k=1, settings=LocalizeSettings(smooth_sigma=0.0))
    assert 1.5 <= start <= 2.5 and 3.5 <= end <= 4.5


def test_speech_moments_match_quoted_phrases_fuzzily() -> None:
    segments = [
        SimpleNamespace(start=2.0, end=4.5, text="Please open the door."),
        SimpleNamespace(start=10.0, end=13.0, text="And so my fellow Americans, ask not what your country can do"),
    ]
    assert quoted_phrase("when does someone say 'ask not what your country'?") == "ask not what your country"
    assert quoted_phrase("a red circle") is None
    best = speech_moments(segments, "when does someone say 'ask not what your contry can do'?")
    assert best[0][:2] == (10.0, 13.0)
    assert speech_moments(segments, 'the moment someone says "open the door"')[0][:2] == (2.0, 4.5)
    assert speech_moments(segments, "when is 'the train is running late' said?") == []


def test_transcript_lines_end_where_the_speaker_pauses() -> None:
    from damo_cli.encoders.audio import TranscriptSegment, Word, split_at_pauses

    said = [(4.9, 5.3, "The"), (5.3, 5.6, "fire"), (5.6, 6.0, "alarm"), (6.0, 6.4, "is"), (6.4, 6.7, "ringing."),
            (13.5, 13.8, "I"), (13.8, 14.0, "will"), (14.0, 14.6, "be"), (15.2, 15.5, "there.")]  # fmt: skip
    words = [Word(s, e, t, 0.9) for s, e, t in said]
    merged = TranscriptSegment(4.85, 15.5, "The fire alarm is ringing. I will be there.", words)
    lines = split_at_pauses([merged], pause=1.0)
    assert [(x.start, x.end, x.text) for x in lines] == [
        (4.9, 6.7, "The fire alarm is ringing."),
        (13.5, 15.5, "I will be there."),  # a 0.6 s pause inside a sentence does not cut it
    ]
    assert [len(x.words) for x in lines] == [5, 4]
    assert split_at_pauses([merged], pause=10.0) == [merged]  # no pause that long: the segment stays as it was


def test_what_is_said_is_quoted_from_the_transcript() -> None:
    from damo_cli.pipeline.ask import is_speech_question, is_temporal, transcript_answer

    assert is_speech_question("What does the man say?") and is_speech_question("what is said about the weather?")
    assert not is_speech_question("What is shown in this video?") and not is_speech_question("when does he say hi?")
    assert is_speech_question("where does she say she starts?") and is_speech_question("who does she talk about?")
    assert not is_speech_question("where does the man place his hand?")
    assert not is_temporal("What does the man say?")
    lines = [SimpleNamespace(start=1.0, end=2.5, text="Good morning everyone."),
             SimpleNamespace(start=8.0, end=10.0, text="It will rain this afternoon.")]  # fmt: skip
    video = SimpleNamespace(transcript=lines, has_audio=True)
    everything = transcript_answer(video, "What does he say?", [(8.0, 10.0, 0.9)])
    assert everything == (
        'From 1.0 s to 2.5 s: "Good morning everyone." From 8.0 s to 10.0 s: "It will rain this afternoon."'
    )
    topical = transcript_answer(video, "What does he say about the weather?", [(8.2, 9.0, 0.7)])
    assert topical == 'From 8.0 s to 10.0 s: "It will rain this afternoon."'  # the line inside the best moment
    assert transcript_answer(SimpleNamespace(transcript=[], has_audio=False), "what is said?", []) == (
        "This video has no sound."
    )


def test_a_short_phrase_in_a_long_utterance_is_timed_by_its_own_words() -> None:
    text = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"
    words = [(0.3 + 0.5 * i, 0.7 + 0.5 * i, w) for i, w in enumerate(text.split())]  # word i spoken from 0.3 + 0.5 i s
    segment = SimpleNamespace(start=0.3, end=11.0, text=text, words=words)
    (start, end, score), *_ = speech_moments([segment], "when does he say 'ask not what your country'?")
    # the words before the phrase ("fellow americans") fit in the same search window but are not part of it
    assert (start, end) == (2.8, 5.2) and score == 1.0  # "ask" .. "country"
    # every word of the second clause is in the first one too: word order tells them apart
    (start, end, score), *_ = speech_moments([segment], "when is 'ask what you can do for your country' said?")
    assert (start, end) == (7.3, 11.0) and score == 1.0  # words 14-21; it ends the utterance: the utterance's end


# --------------------------------------------------------------------------------------------------- annotations


@pytest.fixture
def clip_folder(tmp_path: Path, make_media) -> Path:  # noqa: ANN001
    """Two 6 s videos (and nothing else) in a fresh folder."""
    folder = tmp_path / "clips"
    (folder / "videos").mkdir(parents=True)
    for name in ("a", "b"):
        src = make_media(f"train-{name}.mp4", "-f", "lavfi", "-i", "testsrc=duration=6:size=96x64:rate=10",
                         "-c:v", "libx264", "-pix_fmt", "yuv420p")  # fmt: skip
        (folder / "videos" / f"{name}.mp4").write_bytes(src.read_bytes())
    return folder


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"vid": "a", "query": "x", "relevant_windows": [[1, 2]]}', '{"vid": "c", "query": "y", '
          '"relevant_windows": [[1, 2]]}'], "annotations.jsonl line 2: video 'c' not found"),
        (['{"vid": "a", "query": "x", "relevant_windows": [[3, 2]]}'], "line 1: start 3 s is not before end 2 s"),
        (['', '{"vid": "a", "query": "x", "relevant_windows": [[4, 9]]}'], "line 2: window 4-9 s is outside"),
        (['{"vid": "a", "relevant_windows": [[1, 2]]}'], "line 1: needs a non-empty 'query'"),
        (["not json"], "annotations.jsonl line 1: not valid JSON"),
    ],
)  # fmt: skip
def test_bad_jsonl_rows_are_one_line_errors_naming_the_line(clip_folder: Path, lines: list[str], message: str) -> None:
    (clip_folder / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError) as info:
        rows, source = read_annotations(clip_folder)
        resolve_videos(clip_folder, rows, source)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("video,query,start,end\na.mp4,a dog,1,2\nmissing.mp4,a cat,1,2\n", "annotations.csv line 3: video"),
        ("video,query,start,end\na,a dog,2,2\n", "annotations.csv line 2: start 2 s is not before end 2 s"),
        ("video,query,start,end\na,a dog,1,7.5\n", "annotations.csv line 2: window 1-7.5 s is outside"),
        ("video,query,start,end\na,a dog,one,2\n", "annotations.csv line 2: start and end must be numbers"),
        ("video,text,start,end\na,a dog,1,2\n", "annotations.csv line 1: the header needs columns"),
    ],
)
def test_bad_csv_rows_are_one_line_errors_naming_the_line(clip_folder: Path, rows: str, message: str) -> None:
    (clip_folder / "annotations.csv").write_text(rows)
    with pytest.raises(AnnotationError) as info:
        found, source = read_annotations(clip_folder)
        resolve_videos(clip_folder, found, source)
    assert message in str(info.value)


def test_good_csv_rows_resolve(clip_folder: Path) -> None:
    (clip_folder / "annotations.csv").write_text("video,query,start,end\na.mp4,a dog,1,2\nb,a cat,0,6.2\n")
    rows, source = read_annotations(clip_folder)
    found = resolve_videos(clip_folder, rows, source)
    assert sorted(found) == ["a.mp4", "b"] and rows[1].windows == ((0.0, 6.2),)


# --------------------------------------------------------------------------------------------------- stages


def test_coverage_labels() -> None:
    cov = coverage(spans(5), [(1.5, 3.0)])
    assert cov.tolist() == [0.0, 0.5, 1.0, 0.0, 0.0]


def test_batch_labels_follow_signatures_across_videos() -> None:
    config = tiny_config(text_dim=12)
    videos = synthetic_videos(config, 3)
    batch = make_batch(videos, config, TextTable(fake_encoder(12)), None, np.random.default_rng(0))
    q = 0
    for b, video in enumerate(videos):
        for query in video.queries:
            for c, other in enumerate(videos):
                has = query.signature in other.signature_windows
                assert bool(batch.labels[q, c].sum() > 0) == has, (b, c, query.signature)
            q += 1


def test_stage1_loss_decreases_and_resume_continues_exactly(tmp_path: Path, card) -> None:  # noqa: ANN001
    config = tiny_config(text_dim=12)
    videos = synthetic_videos(config, 12)
    data = StageData(videos[:10], videos[10:])
    text = TextTable(fake_encoder(12))
    straight = Trainer(tiny_model(1), card, settings(1, 40), data, text, tmp_path / "a", progress=False)
    straight.run()
    losses = losses_of(tmp_path / "a", 1, "loss")
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    summary = json.loads((tmp_path / "a" / "stage1" / "summary.json").read_text())
    assert summary["final_val"]["queries"] == 6 and (tmp_path / "a" / "curves.png").is_file()

    # 6 steps in one go vs 3 steps, a fresh process-like trainer resuming from the checkpoint, 3 more
    six = Trainer(tiny_model(1), card, settings(1, 6), data, text, tmp_path / "b", progress=False)
    six.run()
    first = Trainer(tiny_model(1), card, settings(1, 6, checkpoint_every=3), data, text, tmp_path / "c",
                    progress=False)  # fmt: skip
    first.settings = settings(1, 3, checkpoint_every=3)
    first.run()
    resumed = Trainer(tiny_model(1, seed=99), card, settings(1, 6), data, text, tmp_path / "c", progress=False)
    assert resumed.load_resume() and resumed.step == 3
    resumed.run(resume=False)
    trained = set(stage_parameter_names(six.damo, 1))  # the rest is the seed's init, not training
    after = dict(resumed.damo.named_parameters())
    for name, a in six.damo.named_parameters():
        if name in trained:
            assert torch.equal(a, after[name]), name


@pytest.mark.parametrize("stage", [2, 3, 4])
def test_llm_stages_lower_the_language_loss(stage: int, tmp_path: Path, card) -> None:  # noqa: ANN001
    config = tiny_config(text_dim=12)
    videos = synthetic_videos(config, 8)
    data = StageData(videos[:6], videos[6:])
    data.examples = lm_examples(data.train, stage, 0)[:8]  # a few conversations, seen again and again
    data.val_examples = lm_examples(data.val, stage, 1)[:2]
    assert data.examples and all(e.turns[-1][0] == "assistant" for e in data.examples)
    text = TextTable(fake_encoder(12))
    model = tiny_model(stage)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("projector.")}
    trainer = Trainer(model, card, settings(stage, 24, batch_size=2), data, text, tmp_path, progress=False)
    trainer.run()
    total = losses_of(tmp_path, stage, "loss")
    assert np.mean(total[-4:]) < 0.95 * np.mean(total[:4])
    if stage >= 3:  # LoRA on: the (random, tiny) LLM itself learns the answers
        lm = losses_of(tmp_path, stage, "lm")
        assert np.mean(lm[-4:]) < 0.95 * np.mean(lm[:4])
    else:  # the frozen random LLM barely listens to a soft prompt; the projector is trained all the same
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
    final = json.loads((tmp_path / f"stage{stage}" / "summary.json").read_text())["final_val"]
    assert "lm_loss" in final and "R1@0.5" in final


# --------------------------------------------------------------------------------------------------- finetune


@pytest.mark.slow
def test_finetune_smoke_on_generated_clips(tmp_path: Path, ffmpeg_exe: str) -> None:
    """Three generated clips + a CSV -> `damo finetune` (real damo-tiny backbones, a few steps) -> a model
    directory that load_damo accepts, whose per-time head localises."""
    import subprocess

    from damo_cli.model.load import load_damo
    from damo_cli.training.finetune import finetune_folder

    torch.set_num_threads(os.cpu_count() or 1)  # a real 135M LLM: all cores (the fixture restores the count)
    folder = tmp_path / "my-clips"
    folder.mkdir()
    rows = ["video,query,start,end"]
    for i, (start, end) in enumerate([(1.0, 2.5), (2.0, 3.5), (0.5, 2.0)]):
        name = f"clip{i}.mp4"
        box = f"drawbox=x=20:y=20:w=40:h=40:color=red:t=fill:enable='between(t,{start},{end})'"
        tone = f"aevalsrc='0.3*sin(2*PI*660*t)*between(t,{end},{end}+1)':s=16000:d=5"
        subprocess.run(
            [ffmpeg_exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
             "testsrc2=duration=5:size=160x96:rate=10", "-f", "lavfi", "-i", tone, "-vf", box, "-c:v", "libx264",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(folder / name)],
            check=True,
        )  # fmt: skip
        rows += [f"{name},a red square,{start},{end}", f"{name},a high beep,{end},{end + 1}"]
    (folder / "annotations.csv").write_text("\n".join(rows) + "\n")
    out, notes = finetune_folder(folder, tmp_path / "tuned", align_steps=2, qa_steps=1, progress=False)
    assert notes["videos"] == 3 and notes["queries"] == 6
    assert (out / "card.toml").is_file() and (out / "weights.safetensors").is_file()
    loaded = load_damo(out, llm=False)
    assert loaded.trained and loaded.stage == 3


# --------------------------------------------------------------------------------------------------- shipping


def test_shipped_fp16_weights_load_by_card_and_are_verified(tmp_path: Path) -> None:
    from damo_cli.cards import load_card, parse_card
    from damo_cli.errors import ChecksumError
    from damo_cli.model.checkpoint import save_checkpoint
    from damo_cli.model.config import DamoConfig
    from damo_cli.model.load import load_damo
    from damo_cli.training.ship import ship

    card_path = tmp_path / "damo-tiny.toml"
    card_path.write_text(load_card("damo-tiny").path.read_text(encoding="utf-8").split("\n[weights]")[0])
    card = parse_card(card_path)
    torch.manual_seed(3)
    model = DamoModel(DamoConfig.from_card(card))
    save_checkpoint(model, tmp_path / "ckpt", 1, card)
    cli = [sys.executable, "-m", "damo_cli", "models", "ship"]
    shipped = subprocess.run([*cli, str(tmp_path / "ckpt"), "--card", str(card_path)], capture_output=True, text=True)
    assert shipped.returncode == 0, shipped.stderr
    assert (tmp_path / "damo-tiny" / "weights.safetensors").stat().st_size < 25e6
    assert 'path = "damo-tiny/weights.safetensors"' in card_path.read_text()
    not_a_checkpoint = subprocess.run([*cli, str(tmp_path), "--card", str(card_path)], capture_output=True, text=True)
    assert not_a_checkpoint.returncode != 0 and len(not_a_checkpoint.stderr.strip().splitlines()) == 1
    outside = [*cli, str(tmp_path / "ckpt"), "--card", str(card_path), "--out", str(tmp_path.parent / "elsewhere")]
    refused = subprocess.run(outside, capture_output=True, text=True)
    assert refused.returncode != 0 and "under the card's folder" in refused.stderr
    assert not (tmp_path.parent / "elsewhere").exists()
    ship(tmp_path / "ckpt", card_path, tmp_path / "damo-tiny")  # shipping again replaces the table, once
    assert card_path.read_text().count("[weights]") == 1
    loaded = load_damo(str(card_path), llm=False)
    assert loaded.trained and loaded.stage == 1
    name = "time_head.step_proj.weight"
    expected = dict(model.named_parameters())[name].detach().half().float()
    assert torch.equal(dict(loaded.model.named_parameters())[name].detach(), expected)
    weights = tmp_path / "damo-tiny" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ChecksumError, match="do not match model card"):
        load_damo(str(card_path), llm=False)
    source = tmp_path / "ckpt" / "weights.safetensors"
    damaged = bytearray(source.read_bytes())
    damaged[-1] ^= 0xFF
    source.write_bytes(bytes(damaged))
    with pytest.raises(ChecksumError, match="are corrupt"):  # a damaged checkpoint is never shipped
        ship(tmp_path / "ckpt", card_path, tmp_path / "damo-tiny")


@pytest.mark.slow
def test_a_speech_moment_is_found_in_real_recorded_speech(tmp_path: Path, ffmpeg_exe: str) -> None:
    """JFK's recorded speech placed 7 s into a video: the transcript channel finds when the phrase is said."""

    from damo_cli.cards import load_card
    from damo_cli.evaluation.grounding import temporal_iou
    from damo_cli.model.config import DamoConfig
    from damo_cli.pipeline.features import FeatureExtractor

    jfk = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "jfk.flac"
    if not jfk.is_file():
        pytest.skip("../shared/media/jfk.flac is not beside this checkout")
    video = tmp_path / "speech.mp4"
    subprocess.run(
        [ffmpeg_exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=duration=24:size=160x96:rate=10", "-i", str(jfk), "-filter_complex",
         "[1:a]aresample=16000,pan=mono|c0=0.5*c0+0.5*c1,adelay=7000,apad[a]", "-map", "0:v", "-map", "[a]",
         "-t", "24", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(video)],
        check=True,
    )  # fmt: skip
    card = load_card("damo-tiny")
    features = FeatureExtractor(card, DamoConfig.from_card(card), transcribe=True).extract(video)
    moments = speech_moments(features.transcript, "when does someone say 'ask not what your country can do for you'?")
    assert moments, [line.text for line in features.transcript]
    # in the file, "ask not what your country can do for you" runs from 3.29 s to 7.57 s, between pauses measured
    # from the waveform's energy (2.13-3.29 s before it, 7.57-8.19 s after); the answer is its utterance
    iou = float(temporal_iou(np.array([moments[0][:2]]), np.array([[10.29, 14.57]]))[0])
    assert iou >= 0.5, (moments, [(line.start, line.end, line.text) for line in features.transcript])

    # a cache entry whose transcript is missing (e.g. decoding settings changed) is transcribed again, and only that
    again = FeatureExtractor(card, DamoConfig.from_card(card), transcribe=True)
    again.paths(features.key)[1].unlink()
    retranscribed = again.extract(video)
    assert again._visual is None and torch.equal(retranscribed.visual_global, features.visual_global)
    assert retranscribed.transcript == features.transcript  # the same audio gives the same words and times


def test_a_video_id_in_two_data_folders_is_refused_before_any_features(clip_folder: Path, tmp_path: Path) -> None:
    from damo_cli.training.run import prepare_folders

    row = '{"vid": "a", "query": "x", "relevant_windows": [[1, 2]]}\n'
    (clip_folder / "annotations.jsonl").write_text(row)
    other = tmp_path / "other"
    shutil.copytree(clip_folder, other)
    with pytest.raises(DataError, match="video id 'a' is in both .*clips and .*other"):
        prepare_folders([clip_folder, other], None, None)  # type: ignore[arg-type]  # refused before either is used

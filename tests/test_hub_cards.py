"""Hub cards run: pull -> verify -> index -> search -> ask on a tiny card served by the stand-in hub (no real hub is
reachable here), the hub towers' outputs equal the transformers reference classes', and device handling.

The card (tests/hub_cards.py) names tiny random SigLIP, Whisper, BERT-sentence and Qwen2 checkpoints; it ships no
trained DaMO weights, so search and "when" questions run on the zero-shot channel of the SigLIP tower.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hub_cards import (
    CARD,
    CLIP_REPO,
    REPOS,
    SIGLIP2_REPO,
    build_checkpoints,
    build_clip,
    build_siglip2,
    serve,
    write_card,
)
from hub_server import MockHub, hub_env

torch = pytest.importorskip("torch")

CLIP_CARD = "hub-tiny-clip"  # the same card with a CLIP tower (damo-7b's kind)
SIGLIP2_CARD = "hub-tiny-siglip2"  # ... and with a SigLIP 2 NaFlex tower
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    folders = build_checkpoints(tmp_path_factory.mktemp("tiny-hub-card"))
    with MockHub() as server:
        serve(server, folders)
        server.add_folder(CLIP_REPO, build_clip(tmp_path_factory.mktemp("tiny-clip")))
        server.add_folder(SIGLIP2_REPO, build_siglip2(tmp_path_factory.mktemp("tiny-siglip2")))
        yield server


@pytest.fixture(scope="module")
def video(make_media) -> Path:  # noqa: ANN001
    """6 s of moving test pattern with a tone: frames for the tower, audio for Whisper."""
    return make_media(
        "hub-card.mp4", "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=10", "-f", "lavfi", "-i",
        "sine=frequency=440:sample_rate=16000", "-t", "6", "-c:v", "libx264", "-c:a", "aac", "-shortest",
    )  # fmt: skip


@pytest.fixture(scope="module")
def env(hub: MockHub, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user's environment: HF_ENDPOINT at the stand-in, its own HF cache and damo home, the card in its models dir."""
    root = tmp_path_factory.mktemp("hub-user")
    write_card(root / "models", hub)
    write_card(root / "models", hub, name=CLIP_CARD, visual_repo=CLIP_REPO)
    write_card(root / "models", hub, name=SIGLIP2_CARD, visual_repo=SIGLIP2_REPO)
    return hub_env(hub, root, DAMO_NO_SERVER="1")


def damo(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "damo_cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**env, **extra}, timeout=300)


@pytest.fixture(scope="module")
def pulled(env: dict[str, str]) -> dict[str, str]:
    for card in (CARD, CLIP_CARD, SIGLIP2_CARD):
        result = damo(env, "models", "pull", card)
        assert result.returncode == 0, result.stderr
    return env


@pytest.fixture
def here(pulled: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """This process reading the pulled card offline (what HF_HOME and HF_HUB_OFFLINE do at import)."""
    from huggingface_hub import constants

    from damo_cli.cards import load_card

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(Path(pulled["HF_HOME"]) / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for name in ("DAMO_HOME", "DAMO_MODELS_DIR"):
        monkeypatch.setenv(name, pulled[name])
    return load_card(CARD)


# ------------------------------------------------------------------------------------------ the commands, as run


@pytest.mark.slow
def test_pull_index_search_ask_run_offline_on_the_zero_shot_channel(pulled, hub, video, tmp_path):
    offline = {"HF_HUB_OFFLINE": "1"}
    requests = len(hub.requests)
    library = str(tmp_path / "library")

    indexed = damo(pulled, "index", str(video), "--model", CARD, "--library", library, "--json", **offline)
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["indexed"] == 1

    found = damo(pulled, "search", "a colourful test pattern", "--model", CARD, "--library", library, "--json",
                 **offline)  # fmt: skip
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    hits = hits["results"] if isinstance(hits, dict) else hits
    assert hits and all(Path(h["video"]).name == video.name for h in hits)

    asked = damo(
        pulled, "ask", str(video), "when does the pattern move?", "--model", CARD, "--json", "--verbose", **offline
    )
    assert asked.returncode == 0, asked.stderr
    assert "no trained DaMO weights; what is seen comes from the zero-shot channel (image-text-tower)" in asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["model"] == CARD and answer["moments"]
    assert all(0.0 <= m["start"] < m["end"] <= 6.5 for m in answer["moments"])

    opened = damo(pulled, "ask", str(video), "what is shown?", "--model", CARD, "--json", **offline)
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["answer"].strip()

    assert len(hub.requests) == requests  # everything after the pull ran from the verified HF cache

    info = damo(pulled, "models", "info", CARD, "--json")
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["zero_shot"] == "image-text-tower" and described["trained"] is False


def test_a_file_damaged_after_the_pull_is_refused_before_it_loads(pulled, video, tmp_path):
    """The loaders re-hash against the lock file: a weight file changed in the HF cache stops `index` in one line
    (the text encoder's: it loads on every index run, even when the video's features are cached)."""
    snapshots = Path(pulled["HF_HOME"]) / "hub" / f"models--{REPOS['text'].replace('/', '--')}" / "snapshots"
    weights = next(snapshots.rglob("model.safetensors")).resolve()
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        result = damo(pulled, "index", str(video), "--model", CARD, "--library", str(tmp_path / "lib"), "--json",
                      HF_HUB_OFFLINE="1")  # fmt: skip
        assert result.returncode != 0, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "sha256" in lines[0] and f"damo models pull {CARD}" in lines[0], result.stderr
    finally:
        weights.write_bytes(original)


# ----------------------------------------------------------------------------------------- parity with transformers


def frames(n: int = 3, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_the_vision_and_text_towers_equal_the_transformers_reference(here):
    from transformers import AutoImageProcessor, AutoTokenizer, SiglipModel

    from damo_cli.encoders.hub_backbones import pulled_folder
    from damo_cli.encoders.loader import load_backbone

    tower = load_backbone(here, "visual", "cpu")
    folder = str(pulled_folder(here, "visual").path)
    reference = SiglipModel.from_pretrained(folder, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    images = frames()
    with torch.no_grad():
        pixels = processor(images=list(images), return_tensors="pt")
        expected = reference.get_image_features(**pixels)
        texts = ["a dog jumps", "someone opens a door"]
        ids = tokenizer(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        expected_text = reference.get_text_features(input_ids=ids["input_ids"]).pooler_output

    got = tower.encode(images)
    assert torch.equal(got.global_, expected.pooler_output)
    assert torch.equal(got.image_embeds, torch.nn.functional.normalize(expected.pooler_output, dim=-1))
    grid = expected.last_hidden_state.reshape(3, 4, 4, -1).reshape(3, 16, -1)  # 32 px / 8 px patches, row-major
    assert torch.equal(got.local, grid)
    text = tower.embed_text(texts)
    assert np.array_equal(text, torch.nn.functional.normalize(expected_text, dim=-1).numpy())
    # zero-shot ImageNet probabilities: the model's own logits over the class prompts, a distribution per frame
    assert got.class_probs.shape == (3, 1000) and torch.allclose(got.class_probs.sum(-1), torch.ones(3))


def test_a_clip_tower_equals_the_transformers_reference(here):
    """CLIP: global = the post-LayerNorm CLS token, local = the patch tokens without CLS, the image embedding is the
    projection get_image_features returns; text with CLIP's own padding and mask. Scored on a fixed calibration."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    from damo_cli.cards import load_card
    from damo_cli.encoders.hub_backbones import pulled_folder
    from damo_cli.encoders.loader import load_backbone
    from damo_cli.pipeline.zero_shot import CLIP_CALIBRATION, ImageTextTower

    card = load_card(CLIP_CARD)
    tower = load_backbone(card, "visual", "cpu")
    folder = str(pulled_folder(card, "visual").path)
    reference = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    images, texts = frames(), ["a dog jumps", "a door"]  # byte tokens: shorter than the 16 positions
    with torch.no_grad():
        pixels = AutoImageProcessor.from_pretrained(folder)(images=list(images), return_tensors="pt")
        expected = reference.get_image_features(**pixels)
        vision = reference.vision_model(**pixels)
        ids = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
        expected_text = reference.get_text_features(**ids).pooler_output
    got = tower.encode(images)
    assert got.image_embeds.shape == (3, 8)  # projection_dim, not the 16-d tower width
    assert torch.equal(got.image_embeds, torch.nn.functional.normalize(expected.pooler_output, dim=-1))
    assert torch.equal(got.global_, vision.pooler_output)
    assert torch.equal(got.local, vision.last_hidden_state[:, 1:])
    assert np.array_equal(tower.embed_text(texts), torch.nn.functional.normalize(expected_text, dim=-1).numpy())
    assert ImageTextTower(lambda: tower).calibration == CLIP_CALIBRATION


def test_a_siglip2_naflex_tower_equals_the_transformers_reference(here):
    """SigLIP 2 NaFlex: the processor's patch mask and per-image patch grid reach the model; the local map is that
    grid's real patches."""
    from transformers import AutoImageProcessor, AutoTokenizer, Siglip2Model

    from damo_cli.cards import load_card
    from damo_cli.encoders.hub_backbones import pulled_folder
    from damo_cli.encoders.loader import load_backbone

    card = load_card(SIGLIP2_CARD)
    tower = load_backbone(card, "visual", "cpu")
    folder = str(pulled_folder(card, "visual").path)
    reference = Siglip2Model.from_pretrained(folder, local_files_only=True).eval()
    images, texts = frames(), ["a dog jumps", "a door"]
    with torch.no_grad():
        pixels = AutoImageProcessor.from_pretrained(folder)(images=list(images), return_tensors="pt")
        assert set(pixels) == {"pixel_values", "pixel_attention_mask", "spatial_shapes"}
        expected = reference.get_image_features(**pixels)
        ids = AutoTokenizer.from_pretrained(folder)(texts, padding="max_length", max_length=16, return_tensors="pt")
        expected_text = reference.get_text_features(input_ids=ids["input_ids"]).pooler_output
    got = tower.encode(images)
    assert torch.equal(got.global_, expected.pooler_output)
    assert torch.equal(got.image_embeds, torch.nn.functional.normalize(expected.pooler_output, dim=-1))
    assert torch.equal(got.local, expected.last_hidden_state[:, :16])  # a 4 x 4 patch grid per 32 px frame
    assert np.array_equal(tower.embed_text(texts), torch.nn.functional.normalize(expected_text, dim=-1).numpy())


def test_the_whisper_encoder_equals_the_transformers_reference(here):
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from damo_cli.encoders.hub_backbones import pulled_folder
    from damo_cli.encoders.loader import load_backbone

    whisper = load_backbone(here, "audio", "cpu")
    folder = str(pulled_folder(here, "audio").path)
    reference = WhisperForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    samples = np.random.default_rng(1).standard_normal(16000 * 40).astype(np.float32) * 0.1
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    windows = whisper.encode(samples, start=5.0)
    assert [w.start for w in windows] == [5.0, 35.0] and [w.valid for w in windows] == [30, 10]
    with torch.no_grad():
        mel = extractor([samples[:480000], samples[480000:]], sampling_rate=16000, return_tensors="pt")
        expected = reference.get_encoder()(input_features=mel.input_features).last_hidden_state
    assert np.array_equal(np.stack([w.states for w in windows]), expected.numpy())
    # the full model transcribes (noise from a random model, but one line per window with sound, timed to it)
    lines = whisper.transcribe(samples)
    assert [(s.start, s.end) for s in lines] == [(0.0, 30.0), (30.0, 40.0)]
    # the cached greedy decoding gives the tokens a plain argmax over the reference model's full prefix gives
    config, ids = reference.config, [reference.config.decoder_start_token_id]
    with torch.no_grad():
        for _ in range(config.max_target_positions - 2):
            step = reference(input_features=mel.input_features[:1], decoder_input_ids=torch.tensor([ids]))
            token = int(step.logits[0, -1].argmax())
            if token == config.eos_token_id:
                break
            ids.append(token)
    assert lines[0].text == whisper.tokenizer.decode(ids[1:], skip_special_tokens=True).strip()
    assert whisper.transcribe(np.zeros(16000 * 5, np.float32)) == []  # silence: no invented words
    from damo_cli.errors import ModelError

    with pytest.raises(ModelError, match="greedily"):  # what `damo transcribe --beam-size 5` asks
        whisper.transcribe(samples, beam_size=5)


def test_the_zero_shot_channel_searches_frames_with_the_towers_own_text_embedding(here, video):
    """A hub card's "bridge" vectors live in SigLIP's space: the query is the tower's text embedding, scored on
    the model's sigmoid calibration; the ImageNet bridge is untouched for damo-tiny."""
    from damo_cli.cards import parse_card
    from damo_cli.pipeline.analyse import Analyser
    from damo_cli.pipeline.loading import load_model
    from damo_cli.pipeline.zero_shot import ImageNetBridge, ImageTextTower, own_query, zero_shot_kind

    analyser = Analyser(load_model(CARD, "cpu"), "cpu")
    assert isinstance(analyser.zero_shot, ImageTextTower)
    analysis = analyser.analyse(video)
    tower = analyser.features.visual
    assert analysis.bridge.shape == (len(analysis.step_spans), tower.embed_dim)
    query, calibration = own_query(analyser.zero_shot, "a test pattern")
    assert np.array_equal(query, tower.embed_text(["a test pattern"])[0])
    scale, bias = tower.logit_scale_bias
    assert 1 / (1 + np.exp(-(scale * calibration.ceiling + bias))) == pytest.approx(0.5)
    assert 1 / (1 + np.exp(-(scale * calibration.floor + bias))) == pytest.approx(1e-3)
    assert zero_shot_kind(here) == "image-text-tower"
    damo_tiny = parse_card(Path(__file__).resolve().parents[1] / "models" / "damo-tiny.toml")
    assert zero_shot_kind(damo_tiny) == ImageNetBridge.kind
    assert own_query(ImageNetBridge(None, lambda *_: None), "anything") is None  # damo-tiny: the shared query


def test_the_hub_llm_chats(here):
    from damo_cli.encoders.llm import chat
    from damo_cli.encoders.loader import load_backbone

    model, tokenizer = load_backbone(here, "llm", "cpu")
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.dtype == torch.float32
    assert isinstance(chat(model, tokenizer, "hello", max_new_tokens=4), str)


def test_a_hub_backbone_of_another_kind_is_refused_in_one_line(here):
    import dataclasses

    from damo_cli.encoders.loader import load_backbone
    from damo_cli.errors import ModelError

    wrong = dataclasses.replace(here.backbone("visual"), kind="efficientnet-lite0")
    card = dataclasses.replace(here, backbones={**here.backbones, "visual": wrong})
    with pytest.raises(ModelError, match="hf-vision-tower"):
        load_backbone(card, "visual")


# ------------------------------------------------------------------------------------------------------- devices


def test_cpu_computes_in_fp32_and_batches_follow_damo_batch(monkeypatch):
    from damo_cli.device import batch_size, compute_dtype
    from damo_cli.errors import DamoError

    assert compute_dtype("cpu") == torch.float32
    assert batch_size("cpu", 10**6) == 16
    monkeypatch.setenv("DAMO_BATCH", "3")
    assert batch_size("cpu", 10**6) == 3
    monkeypatch.setenv("DAMO_BATCH", "zero")
    with pytest.raises(DamoError, match="DAMO_BATCH"):
        batch_size("cpu", 1)


def test_cuda_out_of_memory_becomes_one_line_with_the_fix(monkeypatch):
    from damo_cli.device import out_of_memory_hint
    from damo_cli.errors import DamoError

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(DamoError) as caught, out_of_memory_hint("encoding frames"):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    message = str(caught.value)
    assert "\n" not in message and "DAMO_BATCH" in message and "--device cpu" in message


@gpu
def test_on_a_gpu_the_towers_run_in_half_precision_close_to_the_cpu(here):
    from damo_cli.device import compute_dtype
    from damo_cli.encoders.loader import load_backbone

    cpu = load_backbone(here, "visual", "cpu").encode(frames())
    tower = load_backbone(here, "visual", "cuda")
    assert tower.model.dtype == compute_dtype("cuda") and compute_dtype("cuda") in (torch.bfloat16, torch.float16)
    got = tower.encode(frames())
    assert got.global_.dtype == torch.float32 and got.global_.device.type == "cpu"
    assert torch.nn.functional.cosine_similarity(got.image_embeds, cpu.image_embeds).min() > 0.99


def test_the_api_searches_the_towers_channel_beside_the_lines_of_words(here, video, tmp_path):
    """Through `damo_cli.load` (what `damo search` and `damo serve` run): the hits carry the zero-shot channel's
    evidence, found with the tower's query (the text encoder's 12-d vector cannot search the 16-d frames)."""
    import damo_cli

    session = damo_cli.load(CARD, device="cpu")
    assert session.index([video], library=tmp_path / "lib").to_json()["indexed"] == 1
    hits = session.search("a test pattern", k=5, library=tmp_path / "lib")
    assert hits and any("bridge" in hit.channels for hit in hits)
    assert all(0.0 <= hit.score <= 1.0 for hit in hits)


def test_the_cli_turns_a_cuda_out_of_memory_anywhere_into_one_line(monkeypatch, capsys):
    from damo_cli import cli

    def run_out_of_memory() -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(cli, "app", run_out_of_memory)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 1 and len(lines) == 1
    assert lines[0].startswith("damo: error: the GPU ran out of memory") and "--device cpu" in lines[0]


@pytest.mark.slow
def test_eval_runs_a_hub_card_through_ask_and_search(pulled, video, tmp_path):
    """`damo eval --videos` scores what ask and search return for a hub card: the bridge-only predictor and the
    search run query the tower in its own space (the text encoder's 12-d vector would not fit its 16-d frames)."""
    gt = tmp_path / "gt.jsonl"
    row = {"qid": "q1", "vid": video.stem, "query": "the test pattern", "duration": 6.0, "relevant_windows": [[1, 3]]}
    gt.write_text(json.dumps(row) + "\n")
    common = ("eval", "--gt", str(gt), "--videos", str(video.parent), "--model", CARD, "--json", "--device", "cpu")
    ran = damo(pulled, *common, "--no-llm", HF_HUB_OFFLINE="1")
    assert ran.returncode == 0, ran.stderr
    assert "bridge" in ran.stdout
    searched = damo(pulled, *common, "--search", HF_HUB_OFFLINE="1")
    assert searched.returncode == 0, searched.stderr


def test_models_prepare_embeds_the_towers_class_prompts_once(pulled):
    """`damo models prepare` loads every hub backbone (re-verified) and builds the tower's class-prompt table, so the
    first index does not pay for it."""
    import shutil

    folder = Path(pulled["DAMO_HOME"]) / "cache" / "hub-classes"
    shutil.rmtree(folder, ignore_errors=True)  # what other tests' towers cached
    first = damo(pulled, "models", "prepare", CARD, "--device", "cpu", HF_HUB_OFFLINE="1")
    assert first.returncode == 0, first.stderr
    assert [line.split()[0] for line in first.stdout.splitlines()] == ["visual", "audio", "text", "llm"]
    assert [np.load(table).shape for table in folder.glob("*.npy")] == [(1000, 16)]

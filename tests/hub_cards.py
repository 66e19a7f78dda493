"""A tiny runnable hub card for tests: random SigLIP, Whisper, BERT sentence model and Qwen2 checkpoints, saved the way
their real hub repos are (`save_pretrained(safe_serialization=True)` with processors and tokenizers), served by the
stand-in hub (tests/hub_server.py) and pinned by a card at its commits.

The models are a few thousand parameters each, so pull -> index -> search -> ask runs in seconds on a CPU. Their
outputs are noise; what the tests check is that every path runs, on the same code a real card uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub_server import MockHub

CARD = "hub-tiny"
REPOS = {  # role -> the stand-in hub repo
    "visual": "damo-test/tiny-siglip-full",
    "audio": "damo-test/tiny-whisper-full",
    "text": "damo-test/tiny-minilm",
    "llm": "damo-test/tiny-qwen2-chat",
}
KINDS = {"visual": "hf-vision-tower", "audio": "hf-whisper-encoder", "text": "sentence-transformers",
         "llm": "hf-causal-lm"}  # fmt: skip
IMAGE_SIZE, PATCH, DIM = 32, 8, 16
TEXT_DIM = 12  # not the tower's width: a query in the wrong space cannot be searched by mistake


def build_checkpoints(root: Path) -> dict[str, Path]:
    """Save the four tiny models under `root`; returns role -> folder."""
    import torch
    from transformers import (
        BertConfig,
        BertModel,
        Qwen2Config,
        Qwen2ForCausalLM,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    from damo_cli.model.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    vocab = len(tokenizer)
    layers = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "hidden_size": DIM}
    folders = {role: root / role for role in REPOS}
    torch.manual_seed(0)

    siglip = SiglipModel(
        SiglipConfig(
            text_config={
                **layers,
                "vocab_size": vocab,
                "max_position_embeddings": 16,
                "pad_token_id": 0,
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
            },
            vision_config={**layers, "image_size": IMAGE_SIZE, "patch_size": PATCH},
        )
    )
    siglip.save_pretrained(folders["visual"], safe_serialization=True)
    SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folders["visual"])
    tokenizer.save_pretrained(folders["visual"])

    # 8 mel bins, 60 mel frames per 30 s window (hop 0.5 s) -> 30 encoder states per window
    whisper = WhisperForConditionalGeneration(
        WhisperConfig(
            vocab_size=vocab, d_model=DIM, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=8,
            max_source_positions=30, max_target_positions=12, decoder_start_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, suppress_tokens=None, begin_suppress_tokens=None,
        )
    )  # fmt: skip
    whisper.save_pretrained(folders["audio"], safe_serialization=True)
    WhisperFeatureExtractor(feature_size=8, sampling_rate=16000, hop_length=8000, chunk_length=30).save_pretrained(
        folders["audio"]
    )
    tokenizer.save_pretrained(folders["audio"])

    BertModel(
        BertConfig(vocab_size=vocab, max_position_embeddings=64, **{**layers, "hidden_size": TEXT_DIM})
    ).save_pretrained(folders["text"], safe_serialization=True)
    tokenizer.save_pretrained(folders["text"])
    (folders["text"] / "1_Pooling").mkdir()
    (folders["text"] / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (folders["text"] / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48}))

    Qwen2ForCausalLM(
        Qwen2Config(vocab_size=vocab, num_key_value_heads=1, max_position_embeddings=256, tie_word_embeddings=True,
                    **layers)
    ).save_pretrained(folders["llm"], safe_serialization=True)  # fmt: skip
    tokenizer.save_pretrained(folders["llm"])
    return folders


CLIP_REPO = "damo-test/tiny-clip"


def build_clip(folder: Path) -> Path:
    """A tiny random CLIP (the damo-7b card's kind of tower) with its processor and tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from damo_cli.model.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    layers = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "hidden_size": DIM}
    torch.manual_seed(1)
    ids = {"eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    text = {**layers, "vocab_size": len(tokenizer), "max_position_embeddings": 16, **ids}
    vision = {**layers, "image_size": IMAGE_SIZE, "patch_size": PATCH}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(
        folder, safe_serialization=True
    )
    size = {"shortest_edge": IMAGE_SIZE}
    CLIPImageProcessor(size=size, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


SIGLIP2_REPO = "damo-test/tiny-siglip2-naflex"


def build_siglip2(folder: Path) -> Path:
    """A tiny random SigLIP 2 NaFlex model: patches of each image's own aspect, a patch mask and the patch grid."""
    import torch
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model

    from damo_cli.model.testing import tiny_tokenizer

    tokenizer = _with_unk(tiny_tokenizer())  # SigLIP 2's tokenizer class (Gemma's) rebuilds it around <unk>
    layers = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "hidden_size": DIM}
    ids = {"eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    torch.manual_seed(2)
    text = {**layers, "vocab_size": len(tokenizer), "max_position_embeddings": 16, **ids}
    vision = {**layers, "patch_size": PATCH, "num_patches": (IMAGE_SIZE // PATCH) ** 2}
    Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)).save_pretrained(folder, safe_serialization=True)
    Siglip2ImageProcessor(patch_size=PATCH, max_num_patches=(IMAGE_SIZE // PATCH) ** 2).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _with_unk(tokenizer: Any) -> Any:
    """The tiny tokenizer with an <unk> in its model's own vocabulary."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec["model"]["vocab"]["<unk>"] = len(spec["model"]["vocab"]) + len(spec["added_tokens"])
    spec["model"]["unk_token"] = "<unk>"
    core = Tokenizer.from_str(json.dumps(spec))
    specials = {k: getattr(tokenizer, k) for k in ("eos_token", "pad_token", "bos_token")}
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", **specials)


def serve(hub: MockHub, folders: dict[str, Path]) -> None:
    for role, folder in folders.items():
        hub.add_folder(REPOS[role], folder)


def write_card(folder: Path, hub: MockHub, name: str = CARD, visual_repo: str = REPOS["visual"]) -> Path:
    """The card pinning the tiny repos at the stand-in's commits, every file listed, with a DaMO model to match."""
    lines = [f'name = "{name}"', 'description = "tiny random SigLIP + Whisper + BERT + Qwen2 on a stand-in hub"',
             "offline = false"]  # fmt: skip
    sizes = {
        "visual": [f"feature_dim = {DIM}", f"image_size = {IMAGE_SIZE}", f"grid = {IMAGE_SIZE // PATCH}"],
        "audio": [f"feature_dim = {DIM}", "window_seconds = 30.0", "states_per_window = 30", "sample_rate = 16000"],
        "text": [f"feature_dim = {TEXT_DIM}"],
        "llm": [f"hidden_size = {DIM}"],
    }
    for role, repo_id in {**REPOS, "visual": visual_repo}.items():
        repo = hub.repos[repo_id]
        files = ", ".join(f'"{name}"' for name in sorted(repo.files))
        lines += ["", f"[backbones.{role}]", f'kind = "{KINDS[role]}"', 'source = "hub"', f'repo = "{repo_id}"',
                  f'revision = "{repo.commit}"', f"hub_files = [{files}]", *sizes[role]]  # fmt: skip
    lines += [
        "",
        "[model]",
        "width = 32", "blocks = 1", "heads = 2", "ffn_mult = 2", "dropout = 0.0", "visual_pool_grid = 2",
        "audio_tokens_per_window = 15", "conv_kernel = 3", "conv_stride = 2", "conv_groups = 4",
        "visual_queries = 4", "audio_queries = 4", "fusion_tokens = 4", "prompt_tokens = 4", "qformer_layers = 1",
        "", "[model.video]", "sample_fps = 2.0", "max_frames_per_window = 120", "window_seconds = 60.0",
        "window_overlap_seconds = 10.0",
        "", "[model.prompt]", "max_transcript_tokens = 64", "max_new_tokens = 8",
        "", "[model.lora]", "r = 2", "alpha = 4", "dropout = 0.0",
        # what `damo models info` counts parameters of (on the meta device)
        "", "[model.backbone_arch.visual]", 'class = "SiglipVisionModel"', f"hidden_size = {DIM}",
        "intermediate_size = 32", "num_hidden_layers = 1", "num_attention_heads = 2", f"image_size = {IMAGE_SIZE}",
        f"patch_size = {PATCH}",
        "", "[model.backbone_arch.audio]", 'class = "WhisperEncoder"', f"d_model = {DIM}", "encoder_layers = 1",
        "encoder_attention_heads = 2", "encoder_ffn_dim = 32", "num_mel_bins = 8", "max_source_positions = 30",
        "", "[model.backbone_arch.text]", 'class = "BertModel"', f"hidden_size = {TEXT_DIM}", "num_hidden_layers = 1",
        "num_attention_heads = 2", "intermediate_size = 32", "vocab_size = 261", "max_position_embeddings = 64",
        "", "[model.backbone_arch.llm]", 'class = "Qwen2ForCausalLM"', f"hidden_size = {DIM}",
        "intermediate_size = 32", "num_hidden_layers = 1", "num_attention_heads = 2", "num_key_value_heads = 1",
        "vocab_size = 261", "max_position_embeddings = 256", "tie_word_embeddings = true",
    ]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

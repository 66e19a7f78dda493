"""Tiny, offline stand-ins for tests and examples: a byte-level tokenizer with a ChatML template, tiny random
transformers LLMs, tiny DaMO configs and features. Nothing here downloads; nothing here is used for inference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from damo_cli.model.config import DamoConfig, LoraSettings, PromptSettings, VideoSettings

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# A Mistral-like template that, like Mistral's, refuses a system role.
INST_TEMPLATE = (
    "{{ '<s>' }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('system role not supported') }}{% endif %}"
    "{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'] + '</s>' }}{% endif %}{% endfor %}"
)


def tiny_tokenizer(template: str = CHATML_TEMPLATE) -> Any:
    """A byte-level tokenizer (256 byte tokens + chat specials), built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>"]
    core.add_special_tokens(specials)
    eos = "</s>" if template == INST_TEMPLATE else "<|im_end|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=eos, pad_token="<|endoftext|>", bos_token="<s>", chat_template=template
    )


def tiny_llm(kind: str = "LlamaForCausalLM", vocab_size: int = 261, hidden: int = 64, seed: int = 0) -> Any:
    """A 2-layer random causal LM of a transformers class the hub cards use."""
    from damo_cli.model.hub_towers import build_backbone

    torch.manual_seed(seed)
    arch = {
        "class": kind,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": vocab_size,
        "max_position_embeddings": 512,
        "tie_word_embeddings": kind != "MistralForCausalLM",
    }
    return build_backbone(arch).eval()


def tiny_config(**overrides: Any) -> DamoConfig:
    """A small DaMO config with damo-tiny's shape of inputs scaled down (fast enough for unit tests)."""
    base = DamoConfig(
        card_name="tiny-test",
        visual_dim=24,
        visual_grid=4,
        audio_dim=16,
        audio_window_seconds=30.0,
        audio_states_per_window=60,
        text_dim=12,
        llm_hidden=64,
        width=32,
        blocks=2,
        heads=4,
        ffn_mult=2,
        dropout=0.0,
        visual_pool_grid=2,
        audio_tokens_per_window=30,
        conv_kernel=3,
        conv_stride=2,
        conv_groups=4,
        visual_queries=8,
        audio_queries=4,
        fusion_tokens=6,
        time_min_period=0.5,
        time_max_period=20000.0,
        prompt_tokens=5,
        qformer_layers=1,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        video=VideoSettings(sample_fps=1.0, max_frames_per_window=64, window_seconds=60.0, window_overlap_seconds=10.0),
        prompt=PromptSettings(max_transcript_tokens=120, max_new_tokens=8),
    )
    return dataclasses.replace(base, **overrides).validate()


def random_features(
    config: DamoConfig,
    frames: int,
    fps: float = 1.0,
    audio_seconds: float | None = None,
    start: float = 0.0,
    seed: int = 0,
) -> Any:
    """Random features of one clip: `frames` frames at `fps` from `start`, audio covering `audio_seconds`."""
    from damo_cli.model.damo import ClipFeatures, state_centres

    generator = torch.Generator().manual_seed(seed)
    times = start + (torch.arange(frames, dtype=torch.float32) + 0.5) / fps
    grid = config.visual_grid**2
    visual_global = torch.randn(1, frames, config.visual_dim, generator=generator)
    visual_local = torch.randn(1, frames, grid, config.visual_dim, generator=generator)
    if audio_seconds is None:
        return ClipFeatures(visual_global, visual_local, times[None])
    window = config.audio_window_seconds
    windows = max(1, int(-(-(audio_seconds) // window)))
    states = torch.randn(1, windows, config.audio_states_per_window, config.audio_dim, generator=generator)
    starts = start + torch.arange(windows, dtype=torch.float32)[None] * window
    centres = state_centres(starts, config.audio_states_per_window, window)
    mask = centres < start + audio_seconds
    return ClipFeatures(visual_global, visual_local, times[None], None, states, mask, starts)

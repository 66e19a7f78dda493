"""The zero-shot bridge's text side: class embeddings per prompt set (cached under a key that names them), the
mixture of a step's top classes, and stored analyses keyed by the bridge's settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from damo_cli.pipeline import bridge


class CountingText:
    """A stand-in text encoder: a fixed random unit vector per sentence, counting what it was asked to embed."""

    fingerprint, dim = "fake-text", 8

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded += texts
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim) for t in texts]
        return bridge._unit(np.asarray(rows))


def test_class_embeddings_average_the_prompts_and_are_cached_per_prompt_set(fresh_home: Path) -> None:
    text, names = CountingText(), ["dog", "cat"]
    one = bridge.class_text_embeddings(text, ("a photo of a {}",), names)
    both = bridge.class_text_embeddings(text, ("a photo of a {}", "there is a {} in the scene"), names)
    assert text.encoded[:2] == ["a photo of a dog", "a photo of a cat"]
    expected = bridge._unit(text.encode(["a photo of a dog"]) + text.encode(["there is a dog in the scene"]))
    assert np.allclose(both[0], expected[0], atol=1e-6) and np.allclose(np.linalg.norm(both, axis=1), 1, atol=1e-6)
    asked = len(text.encoded)
    assert np.array_equal(bridge.class_text_embeddings(text, ("a photo of a {}",), names), one)  # from the cache
    assert len(text.encoded) == asked
    assert not np.allclose(bridge.class_text_embeddings(text, ("{}",), names), one)  # another prompt: another key


def test_a_step_mixes_its_top_classes_by_probability() -> None:
    classes = np.eye(4, dtype=np.float32)
    probs = torch.tensor([[0.6, 0.3, 0.1, 0.0]])
    assert np.allclose(bridge.bridge_vectors(probs, classes, top=1), [[1, 0, 0, 0]])
    mixed = bridge.bridge_vectors(probs, classes, top=3)
    assert np.allclose(mixed, bridge._unit(np.array([[0.6, 0.3, 0.1, 0.0]])))
    sharper = bridge.bridge_vectors(probs, classes, top=3, sharpen=2.0)
    assert sharper[0, 0] > mixed[0, 0]
    assert bridge.bridge_vectors(torch.zeros(0, 4), classes).shape == (0, 4)


def test_stored_analyses_are_keyed_by_the_bridge_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from damo_cli.pipeline.analyse import Analyser
    from damo_cli.pipeline.loading import load_model

    model = load_model("damo-tiny", "cpu")
    shipped = Analyser.fingerprint_of(model)
    monkeypatch.setattr(bridge, "SETTINGS", bridge.SETTINGS + ";another prompt")
    assert Analyser.fingerprint_of(model) != shipped  # a changed bridge re-analyses and re-indexes

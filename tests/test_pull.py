"""`damo models pull` against a stand-in hub (tests/hub_server.py on 127.0.0.1; no real hub is reachable here).

The hub serves tiny random checkpoints of the transformers classes the hub cards name (SigLIP vision tower, Whisper
encoder, BERT, Qwen2), saved with `save_pretrained`; a test card pins them at the stand-in's commits. Each test gets
its own HF cache and damo home. The `env` tests run the real `damo` command in a subprocess with HF_ENDPOINT, HF_HOME
and HF_HUB_OFFLINE set, as a user would (huggingface_hub reads them when imported); the `here` tests call
damo_cli.hub in this process with the same settings patched into huggingface_hub.constants, which is faster.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_server import MockHub, hub_env

TINY = {  # role -> (repo, arch of a randomly initialised transformers model, as a card's backbone_arch names it)
    "visual": (
        "damo-test/tiny-siglip",
        {"class": "SiglipVisionModel", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
    ),
    "audio": (
        "damo-test/tiny-whisper",
        {"class": "WhisperEncoder", "d_model": 16, "encoder_layers": 1, "encoder_attention_heads": 2,
         "encoder_ffn_dim": 32, "num_mel_bins": 8, "max_source_positions": 30},
    ),
    "text": (
        "damo-test/tiny-bert",
        {"class": "BertModel", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
         "intermediate_size": 32, "vocab_size": 64, "max_position_embeddings": 32},
    ),
    "llm": (
        "damo-test/tiny-qwen2",
        {"class": "Qwen2ForCausalLM", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 64, "max_position_embeddings": 64,
         "tie_word_embeddings": True},
    ),
}  # fmt: skip
CARD = "hub-test"
SIGLIP, WHISPER = TINY["visual"][0], TINY["audio"][0]
WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    from damo_cli.model.hub_towers import build_backbone

    torch.manual_seed(0)
    folders = {}
    for role, (_, arch) in TINY.items():
        folders[role] = tmp_path_factory.mktemp(f"tiny-{role}")
        build_backbone(arch).save_pretrained(folders[role])
    return folders


@pytest.fixture(scope="module")
def hub(checkpoints: dict[str, Path]):
    with MockHub() as server:
        for role, folder in checkpoints.items():
            server.add_folder(TINY[role][0], folder)
        yield server


def write_card(folder: Path, hub: MockHub, card_sha256: dict[tuple[str, str], str] | None = None) -> Path:
    """A card whose four backbones pin the stand-in's repos; `card_sha256[(role, file)]` pins a file's sha256
    (by default the Whisper config's, so both ways of verifying a file are used)."""
    if card_sha256 is None:
        card_sha256 = {("audio", "config.json"): hashlib.sha256(hub.repos[WHISPER].files["config.json"]).hexdigest()}
    lines = [f'name = "{CARD}"', 'description = "tiny random checkpoints on a stand-in hub"', "offline = false"]
    for role, (repo_id, _) in TINY.items():
        repo = hub.repos[repo_id]
        lines += ["", f"[backbones.{role}]", 'kind = "test"', 'source = "hub"', f'repo = "{repo_id}"']
        lines += [f'revision = "{repo.commit}"', "feature_dim = 16"]
        for name in sorted(repo.files):
            lines.append(f'[backbones.{role}.hub_files."{name}"]')
            if (role, name) in card_sha256:
                lines.append(f'sha256 = "{card_sha256[(role, name)]}"')
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CARD}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def env(hub: MockHub, tmp_path: Path) -> dict[str, str]:
    hub.clear()
    write_card(tmp_path / "models", hub)
    return hub_env(hub, tmp_path)


@pytest.fixture
def here(hub: MockHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """This process pointed at the stand-in hub (what HF_ENDPOINT / HF_HOME do at import), with its own damo home."""
    from huggingface_hub import constants

    from damo_cli.cards import parse_card

    hub.clear()
    for name, value in {
        "ENDPOINT": hub.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_TOKEN_PATH": str(tmp_path / "hf" / "token"),
        "AGENT_HARNESSES_PATH": str(tmp_path / "hf" / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
    }.items():
        monkeypatch.setattr(constants, name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAMO_HOME", str(tmp_path / "damo"))
    return parse_card(write_card(tmp_path / "models", hub))


def damo(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "damo_cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**env, **extra}, timeout=120)


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 3) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and lines[0].startswith("damo: error:"), result.stderr
    return lines[0]


def blobs(hf_home: str | Path, repo_id: str) -> Path:
    return Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}" / "blobs"


def locked(damo_home: str | Path) -> dict:
    path = Path(damo_home) / "data" / "models.lock.json"
    return json.loads(path.read_text())["models"] if path.exists() else {}


def file_count(hub: MockHub) -> int:
    return sum(len(repo.files) for repo in hub.repos.values())


# ------------------------------------------------------------------------------------------- the command, as run


def test_pull_verifies_every_file_records_it_and_a_second_pull_needs_no_network(env, hub, checkpoints):
    result = damo(env, "models", "pull", CARD, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    served = {(repo.repo_id, name): data for repo in hub.repos.values() for name, data in repo.files.items()}
    assert len(report["files"]) == len(served)
    for f in report["files"]:
        assert f["sha256"] == hashlib.sha256(served[(f["repo"], f["filename"])]).hexdigest()
        assert f["revision"] == hub.repos[f["repo"]].commit and f["fetched"] == "downloaded"
    against = {(f["role"], f["filename"]): f["verified_against"] for f in report["files"]}
    assert against[("audio", "config.json")] == "card sha256"
    assert against[("visual", WEIGHTS)] == "hub sha256 (LFS)" and against[("visual", "config.json")] == "hub git sha1"
    # the lock file beside the user's data holds the same sha256s
    entry = locked(env["DAMO_HOME"])[CARD]
    assert {(f["repo"], f["filename"]): f["sha256"] for f in entry["files"]} == {
        (f["repo"], f["filename"]): f["sha256"] for f in report["files"]
    }
    # LFS files came from the "CDN" host, whole (no Range)
    cdn = [r for r in hub.downloads() if r.path.startswith("/cdn/")]
    assert cdn and all(r.host.startswith("localhost") and r.range is None for r in cdn)
    # the standard HF cache layout: transformers loads the tower from it, offline, with the weights that were served
    from transformers import SiglipVisionModel

    tower = SiglipVisionModel.from_pretrained(
        SIGLIP, revision=hub.repos[SIGLIP].commit, cache_dir=Path(env["HF_HOME"]) / "hub", local_files_only=True
    )
    original = SiglipVisionModel.from_pretrained(checkpoints["visual"])
    assert all((a == b).all() for a, b in zip(tower.state_dict().values(), original.state_dict().values(), strict=True))

    hub.requests.clear()
    again = damo(env, "models", "pull", CARD, "--json", HF_HUB_OFFLINE="1")
    assert again.returncode == 0, again.stderr
    assert hub.requests == []  # pinned commits in the cache: verified from disk, no hub round trip
    assert {f["fetched"] for f in json.loads(again.stdout)["files"]} == {"cached"}
    rows = {row["name"]: row for row in json.loads(damo(env, "models", "list", "--json").stdout)}
    assert rows[CARD]["pulled"] is True and rows[CARD]["ready"] and rows[CARD]["pull"]["status"] == "pulled"


def test_a_killed_pull_resumes_from_what_reached_the_disk(env, hub):
    release = hub.stall_after(WHISPER, WEIGHTS, 6_000)  # sends 6000 bytes, then hangs like a dead link
    proc = subprocess.Popen(
        [sys.executable, "-m", "damo_cli", "models", "pull", CARD],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = blobs(env["HF_HOME"], WHISPER)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            partial = list(folder.glob("*.incomplete")) if folder.is_dir() else []
            if partial and partial[0].stat().st_size == 6_000:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the pull never wrote the first 6000 bytes")
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait()
        release.set()
    result = damo(env, "models", "pull", CARD)
    assert result.returncode == 0, result.stderr
    assert [r.range for r in hub.downloads(WHISPER, WEIGHTS)] == [None, "bytes=6000-"]
    assert not list(folder.glob("*.incomplete"))


def test_a_tampered_file_is_refused_in_one_line_and_not_recorded(env, hub):
    hub.tamper(WHISPER, WEIGHTS)
    line = one_line_error(damo(env, "models", "pull", CARD))
    assert f"{WHISPER}/{WEIGHTS}" in line and "tampered or truncated" in line and "refused" in line
    folder = blobs(env["HF_HOME"], WHISPER)
    assert not (folder / hub.repos[WHISPER].etag(WEIGHTS)).exists() and not list(folder.glob("*.incomplete"))
    assert CARD not in locked(env["DAMO_HOME"])


def test_offline_with_nothing_cached_is_one_clear_line(env, hub):
    line = one_line_error(damo(env, "models", "pull", CARD, HF_HUB_OFFLINE="1"))
    assert "HF_HUB_OFFLINE is set" in line and "not in the Hugging Face cache" in line
    assert hub.requests == []


def test_a_card_without_pinned_revisions_says_so():
    from damo_cli.cards import load_card
    from damo_cli.hub import pull_state

    result = subprocess.run(
        [sys.executable, "-m", "damo_cli", "models", "pull", "damo-base"], capture_output=True, text=True, timeout=60
    )
    line = one_line_error(result)
    assert "damo-base has no pinned revision yet for visual (google/siglip2-base-patch16-224)" in line
    assert pull_state(load_card("damo-7b")).status == "unpinned"
    assert pull_state(load_card("damo-tiny")).status == "packaged"


# -------------------------------------------------------------------------------------- damo_cli.hub, in process


def test_a_connection_dropped_mid_file_resumes_on_the_next_pull(here, hub, tmp_path):
    from damo_cli.errors import ModelError
    from damo_cli.hub import pull

    size = len(hub.repos[SIGLIP].files[WEIGHTS])
    hub.drop_after(SIGLIP, WEIGHTS, 10_000)
    with pytest.raises(ModelError) as err:
        pull(here)
    assert f"interrupted after 10,000 of {size:,} bytes" in str(err.value) and err.value.exit_code == 3
    assert f"damo models pull {CARD}" in str(err.value) and "\n" not in str(err.value)
    folder = blobs(tmp_path / "hf", SIGLIP)
    assert [p.stat().st_size for p in folder.glob("*.incomplete")] == [10_000]
    assert CARD not in locked(tmp_path / "damo")

    report = pull(here)
    first, second = hub.downloads(SIGLIP, WEIGHTS)
    assert first.range is None and second.range == "bytes=10000-"
    fetched = {(f.repo, f.filename): f.fetched for f in report.files}
    assert fetched[(SIGLIP, WEIGHTS)] == "resumed" and not list(folder.glob("*.incomplete"))
    assert CARD in locked(tmp_path / "damo")


def test_a_file_damaged_in_the_cache_later_is_caught_offline(here, hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from damo_cli.commands.system_cmds import _pulled_checks
    from damo_cli.errors import ChecksumError
    from damo_cli.hub import pull, pull_state, verified_files

    pull(here)
    assert {c.name: c.ok for c in _pulled_checks()} == {f"{CARD} pulled files": True}
    blob = blobs(tmp_path / "hf", SIGLIP) / hub.repos[SIGLIP].etag(WEIGHTS)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    assert set(verified_files(here, "audio")) == set(hub.repos[WHISPER].files)  # the other backbones still load
    with pytest.raises(ChecksumError, match="tampered or truncated") as err:
        verified_files(here, "visual")  # never loaded
    assert f"{SIGLIP}/{WEIGHTS}" in str(err.value)
    (check,) = _pulled_checks()  # damo doctor
    assert check.name == f"{CARD} pulled files" and not check.ok and check.fix == f"damo models pull {CARD}"
    assert hub.requests == []
    # pulling again drops the bad blob from the cache and the card from the lock; the next pull fetches it afresh
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ChecksumError, match="removed from the Hugging Face cache"):
        pull(here)
    assert not blob.exists() and CARD not in locked(tmp_path / "damo") and not pull_state(here).pulled
    pull(here)
    assert pull_state(here).pulled and len(hub.downloads(SIGLIP, WEIGHTS)) == 1


def test_a_gated_repo_needs_hf_token_which_never_reaches_the_cdn(here, hub, monkeypatch):
    from damo_cli.errors import ModelError
    from damo_cli.hub import pull

    hub.gate(SIGLIP, "hf_test_token")
    try:
        with pytest.raises(ModelError, match=f"{SIGLIP} is gated: .* set HF_TOKEN"):
            pull(here)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        pull(here)
    finally:
        hub.repos[SIGLIP].token = None
    to_hub = [r for r in hub.requests if "/resolve/" in r.path and SIGLIP in r.path and r.authorization]
    assert to_hub and all(r.authorization == "Bearer hf_test_token" for r in to_hub)
    assert [r.authorization for r in hub.requests if r.path.startswith("/cdn/")] == [None] * len(TINY)


def test_the_card_sha256_wins_over_the_hub(here, hub, tmp_path):
    from damo_cli.cards import parse_card
    from damo_cli.errors import ChecksumError
    from damo_cli.hub import pull

    card = parse_card(write_card(tmp_path / "other", hub, {("visual", WEIGHTS): "0" * 64}))
    with pytest.raises(ChecksumError, match=f"{SIGLIP}/{WEIGHTS} .* the card pins 000000000000"):
        pull(card)
    assert hub.downloads(SIGLIP, WEIGHTS) == []  # refused before a byte was fetched


def test_pins_are_validated(here, hub, tmp_path):
    from damo_cli.cards import parse_card
    from damo_cli.errors import ModelError
    from damo_cli.hub import card_files

    files = card_files(here)
    assert len(files) == file_count(hub) and all(len(f.revision) == 40 for f in files)
    assert [f.filename for f in files if f.sha256] == ["config.json"]  # the one the card vouches for
    path = write_card(tmp_path / "other", hub)
    path.write_text(path.read_text().replace(hub.repos[SIGLIP].commit, "main"))
    with pytest.raises(ModelError, match="revision must be a 40-hex commit hash"):
        card_files(parse_card(path))


def test_the_stand_in_answers_model_info_like_the_hub(hub):
    from huggingface_hub import HfApi

    repo = hub.repos[SIGLIP]
    info = HfApi(endpoint=hub.url).model_info(SIGLIP, revision=repo.commit, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert info.sha == repo.commit and set(siblings) == set(repo.files)
    assert siblings[WEIGHTS].lfs is not None and siblings[WEIGHTS].lfs.sha256 == repo.etag(WEIGHTS)

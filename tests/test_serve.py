"""`damo serve`, as a user runs it: a server in its own process with its own data folder, `damo ask` and
`damo search` printing exactly what they print without it (and saying which path they took with --verbose), a
server killed with SIGKILL that costs nothing but speed, and the address and token rules."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.test_api import RIDE, join_bunny_and_bikes


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A DAMO_HOME of its own (its data folder holds the discovery file), sharing the test session's derived cache
    so no weights are converted again."""
    root = tmp_path_factory.mktemp("serve-home")
    shared_cache = Path(os.environ["DAMO_HOME"]) / "cache"
    shared_cache.mkdir(parents=True, exist_ok=True)
    (root / "cache").symlink_to(shared_cache, target_is_directory=True)
    return root


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "damo_cli", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "DAMO_HOME": str(home), **env},
    )  # fmt: skip


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "damo_cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "DAMO_HOME": str(home)},
    )  # fmt: skip


def discovered(home: Path, server: subprocess.Popen[str], timeout: float = 120) -> dict:
    file = home / "data" / "server.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if file.is_file():
            return json.loads(file.read_text())
        if server.poll() is not None:
            pytest.fail(f"damo serve exited {server.returncode}: {server.stderr.read() if server.stderr else ''}")
        time.sleep(0.2)
    pytest.fail("damo serve wrote no discovery file")


def post(url: str, body: dict, token: str | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_ask_and_search_use_a_running_server_and_print_the_same_and_survive_its_death(
    home, make_media, sample_media_dir, tmp_path
):
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = videos / "bunny then bikes.mp4"
    shutil.copy(join_bunny_and_bikes(make_media, sample_media_dir), clip)
    shutil.copy(sample_media_dir / "bigbuckbunny.mp4", videos / "bunny.mp4")
    lib = tmp_path / "library"
    indexed = run(home, "index", str(videos), "--library", str(lib), "--json")
    assert indexed.returncode == 0, indexed.stderr

    server = start(home, "--library", str(lib))
    try:
        search = ("search", "people riding bikes", "-k", "5", "--library", str(lib), "--json", "--verbose")
        ask = ("ask", str(clip), RIDE, "--json", "--verbose")
        said = ("ask", str(clip), RIDE, "--verbose")  # as text: times and scores printed from unrounded values
        table = ("search", "people riding bikes", "-k", "5", f"--library={lib}", "--verbose")  # rich's table
        subtitles = ("search", "--srt", "people riding bikes", "--library", str(lib), "--verbose")
        calls = (search, ask, said, table, subtitles)
        # the in-process answers, while the server loads its model
        alone = [run(home, *args, DAMO_NO_SERVER="1") for args in calls]
        for result in alone:
            assert result.returncode == 0 and result.stdout.strip(), result.stderr
            assert "running in this process: DAMO_NO_SERVER is set" in result.stderr
            assert "damo-tiny on cpu: trained DaMO weights, beside the zero-shot channel (imagenet-bridge)" in (
                result.stderr
            )  # --verbose says what carries what is seen
        info = discovered(home, server)
        assert info["host"] == "127.0.0.1" and info["pid"] == server.pid and info["model"] == "damo-tiny"
        assert info["library"] == str(lib.resolve()) and info["token"] is False

        served = [run(home, *args) for args in calls]
        for one, other in zip(alone, served, strict=True):
            assert other.returncode == 0, other.stderr
            assert other.stdout == one.stdout  # byte for byte
            # said once: the quick lane answered before the full command line was imported
            assert other.stderr.count(f"using the server at http://127.0.0.1:{info['port']}") == 1, other.stderr
        hits = json.loads(served[0].stdout)
        assert hits[0]["video"] == str(clip) and hits[0]["start"] >= 4.5
        assert "damo search: people riding bikes" in served[3].stdout and "│ 1 │" in served[3].stdout
        # what the quick lane leaves to the full command line is judged there, as without a server
        for args, line in (
            (("search", " ", "--json"), "the search query is empty"),
            (("ask", str(tmp_path / "missing.mp4"), RIDE), "missing.mp4"),
            (("ask", str(videos), RIDE), "videos"),
            (("search", "bikes", "-k", "0"), "-k"),
        ):
            with_server, without = run(home, *args), run(home, *args, DAMO_NO_SERVER="1")
            assert with_server.returncode == without.returncode != 0 and line in with_server.stderr
            assert with_server.stderr == without.stderr and "Traceback" not in with_server.stderr

        url = f"http://127.0.0.1:{info['port']}"
        with urllib.request.urlopen(f"{url}/status", timeout=30) as response:
            status = json.loads(response.read())
        assert status["pid"] == server.pid and status["model"] == "damo-tiny" and status["stats"]["videos"] == 2
        # searches and questions in parallel: each gets what it gets alone
        results: list[tuple[int, object]] = []
        requests = [("/search", {"query": "people riding bikes", "k": 5})] * 4
        requests += [("/ask", {"video": str(clip), "question": RIDE})] * 4
        threads = [threading.Thread(target=lambda r=r: results.append(post(url + r[0], r[1]))) for r in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert sorted(map(json.dumps, results)) == sorted(
            [json.dumps((200, hits))] * 4 + [json.dumps((200, json.loads(alone[1].stdout)))] * 4
        )
        code, error = post(f"{url}/ask", {"video": str(tmp_path / "missing.mp4"), "question": "when?"})
        assert code == 422 and error["exit_code"] == 2 and "\n" not in error["error"]

        os.kill(server.pid, signal.SIGKILL)  # no clean shutdown: the discovery file stays behind
        server.wait(30)
        assert (home / "data" / "server.json").is_file()
        after = run(home, *search)
        assert after.returncode == 0, after.stderr
        assert after.stdout == alone[0].stdout and "running in this process" in after.stderr
        assert not (home / "data" / "server.json").exists()  # the stale file is gone
        stats = json.loads(run(home, "index", "--stats", "--json", "--library", str(lib)).stdout)
        assert stats["videos"] == 2 and stats["failures"] == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)


def test_the_quick_lane_reads_only_the_arguments_it_knows_for_sure():
    from damo_cli.server.quick import parse

    call = parse(["search", "a dog", "-k", "3", "--path=~/Videos", "--json", "--library", "lib", "--verbose"])
    assert call is not None and call.arguments == ["a dog"] and call.flags == {"--json", "--verbose"}
    assert call.values == {"-k": "3", "--path": "~/Videos", "--library": "lib"}
    call = parse(["ask", "clip.mp4", "when does the dog jump?", "--model", "damo-base", "--device=cpu"])
    assert call is not None and call.arguments == ["clip.mp4", "when does the dog jump?"]
    assert call.value("--model") == "damo-base" and call.value("--device") == "cpu"
    for argv in (
        [],
        ["index", "videos"],
        ["search", "a dog", "--help"],
        ["search", "a dog", "--clip", "out"],  # exporting clips needs the full command line
        ["search", "a dog", "-k3"],
        ["search", "a dog", "-k=3"],  # click reads the value "=3" and refuses it
        ["search", "a dog", "-k", "0"],
        ["search", "a dog", "-k"],
        ["search", "   "],
        ["search", "a dog", "more words"],
        ["search", "--", "-a dog"],
        ["search", "a dog", "--json", "--srt"],
        ["ask", "clip.mp4"],
        ["ask", "clip.mp4", "when?", "--library", "lib"],  # ask has no --library
        ["ask", "clip.mp4", "when?", "--srt"],
    ):
        assert parse(argv) is None, argv


def test_a_clean_stop_removes_the_discovery_file_and_other_addresses_need_a_token(home):
    refused = run(home, "serve", "--host", "0.0.0.0")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1 and "--token" in refused.stderr
    assert not (home / "data" / "server.json").exists()
    server = start(home)
    try:
        info = discovered(home, server)
        second = run(home, "serve", "--port", "0")  # one server per data folder
        assert second.returncode == 1 and f"already running at http://127.0.0.1:{info['port']}" in second.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
        assert not (home / "data" / "server.json").exists()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)


def test_a_token_is_required_on_every_request_and_never_written_down(tmp_path, monkeypatch):
    """The server in this process, with a stand-in session: what the token guards, and the discovery file."""
    from damo_cli.server import read_discovery, remove_discovery, write_discovery
    from damo_cli.server.app import DamoServer

    monkeypatch.setenv("DAMO_HOME", str(tmp_path / "home"))

    class Model:
        source = name = "damo-tiny"

    class StandIn:
        model, device = Model(), "cpu"

        def describe(self) -> dict:
            return {"model": "damo-tiny", "device": "cpu"}

    server = DamoServer(("127.0.0.1", 0), StandIn(), tmp_path / "no library", token="s3cret")  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert post(f"{url}/search", {"query": "a dog"})[0] == 401
        assert post(f"{url}/search", {"query": "a dog"}, token="wrong")[0] == 401
        code, reply = post(f"{url}/search", {"query": "a dog"}, token="s3cret")
        assert code == 422 and "no library" in reply["error"] and reply["exit_code"] == 6
        request = urllib.request.Request(f"{url}/status", headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=30) as response:
            status = json.loads(response.read())
        assert status["model"] == "damo-tiny" and status["stats"] is None and "no library" in status["error"]
        info = server.info()
        write_discovery(info)
        text = (tmp_path / "home" / "data" / "server.json").read_text()
        assert "s3cret" not in text and read_discovery() == info and info.token is True
        remove_discovery(info)
        assert read_discovery() is None
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (b"", "not an HTTP reply"),  # accepted, then closed without a word
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP reply"),  # something else owns the port
        (b'HTTP/1.0 200 OK\r\nContent-Length: 400\r\n\r\n{"result": [', "reply cut short"),  # killed mid-reply
    ],
)
def test_a_reply_that_is_not_a_whole_http_answer_is_answered_in_this_process(tmp_path, monkeypatch, reply, said):
    """The client speaks HTTP on a plain socket (http.client's import was a quarter of a served search): whatever
    listens on the discovery file's port and does not answer like `damo serve` makes `damo search` fall back."""
    import socket

    from damo_cli.server import ServerInfo, client, write_discovery

    monkeypatch.setenv("DAMO_HOME", str(tmp_path))
    monkeypatch.delenv("DAMO_NO_SERVER", raising=False)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_once() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    library = str((tmp_path / "data" / "library").resolve())
    write_discovery(ServerInfo("127.0.0.1", port, os.getpid(), "damo-tiny", "cpu", library, "0", False))
    lines: list[str] = []
    try:
        result = client.search("a dog", 5, None, model="damo-tiny", device="auto", library=None, say=lines.append)
    finally:
        thread.join(10)
        listener.close()
    assert result is None
    assert lines == [f"running in this process: the server at http://127.0.0.1:{port} stopped answering ({said})"]

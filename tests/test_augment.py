"""`damo data augment`: LLM-written temporally grounded QA whose every time is checked against the annotation.

- validation on written replies: right times, invented times (copied example, clock rounding, past the end, a stray
  decimal), no time, the wrong moment, a question that gives its answer away, off-topic questions;
- templates: every template item passes the same validation; plans and items are reproducible from the seed;
- the OpenAI-compatible client against a real HTTP server started here (canned replies, one with the right times,
  one with invented ones), through the CLI: accept/reject counts, the key only in the header, retries, one-line errors;
- the local path with the real SmolLM2 on two annotations.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from damo_cli.data import augment as aug
from damo_cli.data.errors import DataError

REPO = Path(__file__).resolve().parents[1]
CHARADES = REPO.parent / "shared" / "data" / "charades_sta" / "charades_test_release.jsonl"

LIGHT = aug.LabelledMoment(1, "v1", "person turn a light on.", 30.96, ((24.3, 30.4),))
DOOR = aug.LabelledMoment(2, "v1", "person opens the door.", 30.96, ((2.0, 7.5),))
BED = aug.LabelledMoment(3, "v1", "person sits on the bed.", 30.96, ((10.0, 16.2),))
TWICE = aug.LabelledMoment(4, "v2", "a person eats a sandwich.", 20.0, ((3.0, 6.0), (12.0, 15.5)))


def _verdict(spec: aug.TurnSpec, reply: str) -> aug.Verdict:
    parsed = aug.parse_reply(reply)
    if parsed is None:
        return aug.Verdict(False, "unparsable")
    moments = [m for m in (spec.target, spec.anchor, DOOR) if m is not None]  # DOOR: an earlier turn's moment
    return aug.check_turn(spec, *parsed, aug.TimeCheck(moments, aug.TOLERANCE))


WHEN_LIGHT = aug.TurnSpec("when", LIGHT)
Q_LIGHT = "Question: When does the person turn on the light?\n"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Q_LIGHT + "Answer: The person turns on the light from 24.3 s to 30.4 s.", None),
        (Q_LIGHT + "Answer: From 24.3 to 30.4 seconds.", None),
        (Q_LIGHT + "Answer: 24.3-30.4s, about 6.1 s in all. It is 2 lamps.", None),  # length and a count are fine
        ("**Question:** When is the light turned on?\n**Answer:** from 24.3 s to 30.4 s", None),
        ("Question: When is the light turned on? Answer: from 24.3 s to 30.4 s", None),
        ('Q: "When is the light turned on?"\nA:\n"From 24.3 s to 30.4 s."', None),
        (Q_LIGHT + "Answer: From 24.4 s to 30.3 s.", None),  # within the 0.25 s tolerance
        (Q_LIGHT + "Answer: From 3.0 s to 7.5 s.", "invented_times"),  # the prompt example's times, copied
        (Q_LIGHT + "Answer: From 00:24 to 00:30.", "invented_times"),  # 30 s is 0.4 s off 30.4 s
        (Q_LIGHT + "Answer: From 24.3 s to 45.0 s.", "invented_times"),  # past the end: judged, not dropped
        (Q_LIGHT + "Answer: From 24.3 s to 30.4 s, 2.5 s after the door opens.", "invented_times"),
        (Q_LIGHT + "Answer: The person turns on the light.", "unparsable"),
        (Q_LIGHT + "The answer is from 24.3 s to 30.4 s.", "unparsable"),  # no Answer line
        (Q_LIGHT + "Answer: Task: ask when it happens.", "unparsable"),  # repeats the prompt
        (Q_LIGHT + "Answer: It starts at 24.3 s.", "wrong_moment"),  # a real time, but not the window asked for
        ("Question: When does the light go on from 24.3 s to 30.4 s?\nAnswer: From 24.3 s to 30.4 s.", "wrong_moment"),
        ("Question: When does the event occur?\nAnswer: From 24.3 s to 30.4 s.", "off_topic"),
    ],
)
def test_when_answers_are_checked_against_the_source_window(reply: str, reason: str | None) -> None:
    verdict = _verdict(WHEN_LIGHT, reply)
    assert verdict.reason == reason, verdict
    assert verdict.ok == (reason is None)


@pytest.mark.parametrize(
    ("spec", "reply", "reason"),
    [
        (aug.TurnSpec("duration", LIGHT), "Question: How long is the light being turned on?\nAnswer: 6.1 s.", None),
        (aug.TurnSpec("duration", LIGHT), "Question: How long does turning the light on take?\nAnswer: 9 s.",
         "invented_times"),
        (aug.TurnSpec("duration", LIGHT), "Question: How long does the light take?\nAnswer: It lasts 30.96 s.",
         "wrong_moment"),  # the video's duration is a real time but not this answer
        (aug.TurnSpec("describe", LIGHT), "Question: What happens from 24.3 s to 30.4 s?\nAnswer: Someone turns a "
         "lamp light on.", None),
        (aug.TurnSpec("describe", LIGHT), "Question: What happens in the video?\nAnswer: The light goes on.",
         "wrong_moment"),
        (aug.TurnSpec("describe", LIGHT), "Question: What happens from 24.3 s to 30.4 s?\nAnswer: A dog barks.",
         "off_topic"),
        (aug.TurnSpec("after", BED, DOOR), "Question: What does the person do after opening the door?\nAnswer: "
         "They sit on the bed, from 10.0 s to 16.2 s.", None),
        (aug.TurnSpec("after", BED, DOOR), "Question: What happens after the door opens at 2.0 s?\nAnswer: "
         "The person sits on the bed from 10.0 s to 16.2 s.", None),  # placing the anchor is allowed
        (aug.TurnSpec("after", BED, DOOR), "Question: What does the person do after opening the door?\nAnswer: "
         "They open it from 2.0 s to 7.5 s.", "wrong_moment"),
        (aug.TurnSpec("order", DOOR, BED), "Question: Which comes first, opening the door or sitting on the bed?\n"
         "Answer: The door opens first, from 2.0 s to 7.5 s; then the bed, from 10.0 s to 16.2 s.", None),
        (aug.TurnSpec("when", TWICE), "Question: When does the person eat a sandwich?\nAnswer: From 3.0 s to 6.0 s.",
         "wrong_moment"),  # it happens twice: both windows are the answer
        (aug.TurnSpec("when", TWICE), "Question: When does the person eat a sandwich?\nAnswer: From 3.0 s to 6.0 s "
         "and again from 12.0 s to 15.5 s.", None),
        # three mistakes SmolLM2 made on Charades-STA that only these checks catch:
        (aug.TurnSpec("when", DOOR), "Question: Where does the person open the door?\nAnswer: The person opens the "
         "door from 2.0 s to 7.5 s.", "off_topic"),  # a "where" question with a "when" answer
        (aug.TurnSpec("follow_after", BED, DOOR), "Question: And what does the person do after sitting on the bed?\n"
         "Answer: The person sits on the bed, from 10.0 s to 16.2 s.", "off_topic"),  # "after" its own answer
        (aug.TurnSpec("follow_after", BED, DOOR), "Question: And what does the person do after that?\n"
         "Answer: The person sits on the bed, from 10.0 s to 16.2 s.", None),
        (aug.TurnSpec("follow_duration", BED), "Question: How long does that take?\nAnswer: It lasts 6.2 s, from "
         "2.0 s to 7.5 s.", "wrong_moment"),  # the right length next to the previous moment's window
    ],
)  # fmt: skip
def test_other_tasks_are_checked_too(spec: aug.TurnSpec, reply: str, reason: str | None) -> None:
    assert _verdict(spec, reply).reason == reason


def _write(path: Path, moments: list[aug.LabelledMoment]) -> Path:
    lines = [
        {"qid": m.qid, "vid": m.vid, "query": m.query, "duration": m.duration, "relevant_windows": [list(w) for w in
         m.windows], "split": "train"}
        for m in moments
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _charades(limit: int) -> list[aug.LabelledMoment]:
    if not CHARADES.is_file():
        pytest.skip("../shared/data/charades_sta is absent (a user's clone)")
    return aug.read_annotations(CHARADES, limit)


def test_every_template_item_passes_validation_and_is_reproducible() -> None:
    moments = [LIGHT, DOOR, BED, TWICE, *_charades(150)]
    items, summary = aug.augment(moments, None, seed=3)
    tasks = {item["task"] for item in items}
    assert tasks == set(aug.TASKS)  # every kind of item appears, dialogues included
    plans = {p.id: p for p in aug.plan_items(moments, seed=3)}
    for item in items:
        plan = plans[item["id"]]
        check = aug.TimeCheck(plan.moments, aug.TOLERANCE)
        turns = item["turns"]
        assert [t["role"] for t in turns] == ["user", "assistant"] * len(plan.turns)
        for i, spec in enumerate(plan.turns):
            verdict = aug.check_turn(spec, turns[2 * i]["content"], turns[2 * i + 1]["content"], check)
            assert verdict.ok, (item, verdict)
        assert item["generator"] == "template" and item["fallback_for"] == "no_llm"
        # the item's windows are source windows of its own video
        sources = {w for m in plan.moments for w in m.windows}
        assert {tuple(w) for w in item["relevant_windows"]} <= sources
        assert all(m.vid == item["vid"] for m in plan.moments)
    assert summary.totals["from_templates"] == len(items) == summary.items
    assert summary.totals["generated"] == 0 and summary.acceptance_rate is None
    dialogues = [i for i in items if i["kind"] == "dialogue"]
    assert dialogues and all(len(d["turns"]) in (4, 6) for d in dialogues)

    again, _ = aug.augment(moments, None, seed=3)
    assert again == items
    other, _ = aug.augment(moments, None, seed=4)
    assert other != items
    only, _ = aug.augment(moments, None, seed=3, tasks=["when", "dialogue"])
    assert {i["task"] for i in only} == {"when", "dialogue"}
    with pytest.raises(DataError, match="unknown task"):
        aug.plan_items(moments, tasks=["whenn"])


def test_reading_annotations(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.jsonl", [LIGHT, TWICE])
    moments = aug.read_annotations(src)
    assert moments[0].windows == ((24.3, 30.4),) and moments[0].split == "train"
    items, _ = aug.augment(moments, None)
    assert all(i["split"] == "train" for i in items)  # a held-out source stays held out
    dup = tmp_path / "dup.jsonl"
    dup.write_text(src.read_text().splitlines()[0] + "\n" + src.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match=r"dup.jsonl line 2: duplicate qid 1 \(first on line 1\)"):
        aug.read_annotations(dup)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": 1, "vid": "v", "query": "x", "duration": 5, "relevant_windows": [[1, 2]]}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl line 2: not valid JSON"):
        aug.read_annotations(bad)


# ---------------------------------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint: a real HTTP server on localhost with canned completions


class _Server:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, Any]] = []  # replies to send first (status, body), then `reply` answers
        self.delay = 0.0
        self.reply: Callable[[dict[str, Any]], str] = lambda body: "Question: ?\nAnswer: ?"


@pytest.fixture
def server() -> Iterator[tuple[_Server, str]]:
    state = _Server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if state.delay:
                threading.Event().wait(state.delay)
            if state.script:
                status, payload = state.script.pop(0)
            else:
                content = state.reply(body)
                status, payload = 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out first (the timeout test)
                pass

        def log_message(self, *args: Any) -> None:  # keep pytest's output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _canned(body: dict[str, Any]) -> str:
    """Right times for the light, invented times for the sandwich (as a weak LLM might write them)."""
    last = body["messages"][-1]["content"]
    if "light" in last:
        return "Question: When does the person turn on the light?\nAnswer: The light goes on from 24.3 s to 30.4 s."
    return "Question: When does the person eat a sandwich?\nAnswer: From 1.0 s to 2.0 s."


def test_endpoint_items_are_validated_and_counted(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from damo_cli.commands.data_cmds import app

    state, url = server
    state.reply = _canned
    key = "sk-test-4f1c2a"
    monkeypatch.setenv("DAMO_TEST_KEY", key)
    sandwich = aug.LabelledMoment(5, "v3", "a person eats a sandwich.", 20.0, ((3.0, 6.0),))
    src = _write(tmp_path / "grounding.jsonl", [LIGHT, sandwich])
    out, rejects = tmp_path / "qa.jsonl", tmp_path / "rejects.jsonl"
    args = ["augment", str(src), str(out), "--endpoint", url + "/v1", "--model", "test-model", "--api-key-env",
            "DAMO_TEST_KEY", "--tasks", "when", "--temperature", "0", "--rejects", str(rejects)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "LLM acceptance 50.0% (1/2)" in result.output

    summary = json.loads((tmp_path / "qa.summary.json").read_text())
    assert summary["generator"] == "endpoint:test-model"
    assert (summary["generated"], summary["accepted"], summary["rejected_invented_times"]) == (2, 1, 1)
    assert summary["from_templates"] == 1 and summary["items"] == 2
    assert summary["by_type"]["qa"]["rejected_invented_times"] == 1
    items = [json.loads(line) for line in out.read_text().splitlines()]
    by_qid = {i["source_qid"]: i for i in items}
    assert by_qid[1]["generator"] == "endpoint:test-model" and "fallback_for" not in by_qid[1]
    assert by_qid[1]["turns"][1] == {"role": "assistant", "content": "The light goes on from 24.3 s to 30.4 s."}
    assert by_qid[5]["generator"] == "template" and by_qid[5]["fallback_for"] == "invented_times"
    assert "1.0 s" not in json.dumps(by_qid[5])  # the invented times did not leak into the output
    assert json.loads(rejects.read_text())["reason"] == "invented_times"

    # the wire protocol: POST /v1/chat/completions with model, messages, temperature; the key only in the header
    assert len(state.requests) == 2
    request = state.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {key}"
    assert request["body"]["model"] == "test-model" and request["body"]["temperature"] == 0.0
    assert request["body"]["messages"][0]["role"] == "system"
    assert "from 24.3 s to 30.4 s" in request["body"]["messages"][-1]["content"]  # the prompt supplies the times
    for path in (out, rejects, tmp_path / "qa.summary.json"):
        assert key not in path.read_text()
    assert key not in result.output


def test_endpoint_retries_then_fails_with_one_line(server, monkeypatch: pytest.MonkeyPatch) -> None:
    state, url = server
    state.reply = _canned
    monkeypatch.setenv("DAMO_TEST_KEY", "sk-secret-99")
    client = aug.EndpointGenerator(url, "m", "DAMO_TEST_KEY", retries=2, backoff=0.0, timeout=5)
    messages = [{"role": "user", "content": "light"}]

    state.script = [(503, {"error": {"message": "overloaded"}}), (429, b"slow down")]
    assert "24.3 s" in client.complete(messages, seed=0)  # two retryable failures, then the answer
    assert len(state.requests) == 3

    state.script = [(401, {"error": {"message": "invalid api key sk-secret-99"}})]
    with pytest.raises(DataError) as err:
        client.complete(messages, seed=0)
    assert "HTTP 401" in str(err.value) and "sk-secret-99" not in str(err.value) and "\n" not in str(err.value)
    assert len(state.requests) == 4  # a refused key is not retried

    state.script = [(500, b"boom")] * 3
    with pytest.raises(DataError, match=r"failed after 3 attempts: HTTP 500: boom"):
        client.complete(messages, seed=0)

    state.script = [(200, b"<html>not an API</html>")]
    with pytest.raises(DataError, match="did not answer like /v1/chat/completions"):
        client.complete(messages, seed=0)

    state.delay = 1.0
    slow = aug.EndpointGenerator(url, "m", retries=0, timeout=0.2)
    with pytest.raises(DataError, match="failed after 1 attempt: timed out"):
        slow.complete(messages, seed=0)


def test_endpoint_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAMO_MISSING_KEY", raising=False)
    with pytest.raises(DataError, match="DAMO_MISSING_KEY"):
        aug.EndpointGenerator("http://127.0.0.1:1", "m", "DAMO_MISSING_KEY")
    with pytest.raises(DataError, match="--model is required"):
        aug.EndpointGenerator("http://127.0.0.1:1", "")
    with pytest.raises(DataError, match="http"):
        aug.chat_completions_url("localhost:8000")
    for given in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/chat/completions"):
        assert aug.chat_completions_url(given) == "http://h:8000/v1/chat/completions"
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = aug.EndpointGenerator(f"http://127.0.0.1:{port}", "m", retries=1, backoff=0.0, timeout=2)
    with pytest.raises(DataError, match=r"failed after 2 attempts: .*refused"):
        client.complete([{"role": "user", "content": "hi"}], seed=0)


# ---------------------------------------------------------------------------------------------------------------------
# The local LLM, for real


@pytest.mark.slow
def test_local_smollm2_items_are_validated() -> None:
    generator = aug.LocalGenerator.from_card("damo-tiny", max_new_tokens=40)
    assert generator.name == "local:smollm2"
    moments = [LIGHT, aug.LabelledMoment(6, "v4", "a person is putting a book on a shelf.", 33.8, ((0.0, 6.9),))]
    rejects: list[dict[str, Any]] = []
    items, summary = aug.augment(moments, generator, tasks=["when"], rejects=rejects)
    t = summary.totals
    assert t["generated"] == 2 == t["accepted"] + sum(t[f"rejected_{r}"] for r in aug.REJECT_REASONS)
    assert len(items) == 2 and t["from_templates"] == 2 - t["accepted"] == len(rejects)
    llm_items = [i for i in items if i["generator"] == "local:smollm2"]
    # Measured: with its worked example in the prompt, SmolLM2-135M answers these "when" questions correctly.
    assert llm_items, rejects
    for item in llm_items:
        question, answer = item["turns"][0]["content"], item["turns"][1]["content"]
        source = next(m for m in moments if m.qid == item["source_qid"])
        assert aug.check_turn(aug.TurnSpec("when", source), question, answer, aug.TimeCheck([source], 0.25)).ok
        assert aug.parse_moments(answer) == [source.windows[0]]

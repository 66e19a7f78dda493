"""`damo ask` latency on one clip: cold (no features cached) and warm (features cached), in-process and as the CLI.

In-process runs use the already loaded model and follow `damo ask`'s own steps (content key, feature cache, analyse
on a miss and save, answer). CLI runs are `damo ask` subprocesses: their wall time adds process start, imports and
model load. "Cold" is a fresh DAMO_HOME whose feature cache is empty but whose converted weights are the user's
(`homes.fresh_home`), so the one-time GGUF conversion is not in it.
"""

from __future__ import annotations

import json
from pathlib import Path

from damo_cli.bench.homes import fresh_home, run_cli, using_home
from damo_cli.bench.report import Figure, stopwatch
from damo_cli.pipeline import feature_cache
from damo_cli.pipeline.analyse import Analyser
from damo_cli.pipeline.ask import AskResult, answer_question

# A "when" question is answered from the evidence (no LLM); an open one is answered by the LLM.
SPEECH_QUESTION = "when does he say 'ask not what your country can do for you'?"
TONE_QUESTION = "when does the tone play?"
OPEN_QUESTION = "what is said in this video?"


def ask_in_process(analyser: Analyser, clip: Path, question: str, device: str) -> tuple[float, bool, AskResult]:
    """(seconds, whether the features were cached, result), the same steps as `damo ask`."""
    with stopwatch() as took:
        analysis, cached = feature_cache.load_or_analyse(analyser, clip)
        result = answer_question(analyser, analysis, question, device)
    return took(), cached, result


def _shown(result: AskResult | dict) -> dict:
    data = result.to_json() if isinstance(result, AskResult) else result
    return {"answer": data["answer"][:200], "moments": data["moments"][:2]}


def ask_latency(
    analyser: Analyser, clip: Path, has_speech: bool, work: Path, user_cache: Path, model: str, device: str
) -> list[Figure]:
    question = SPEECH_QUESTION if has_speech else TONE_QUESTION
    with using_home(fresh_home(work, "home-ask", user_cache)):
        cold_s, cold_cached, cold = ask_in_process(analyser, clip, question, device)
        warm_s, warm_cached, warm = ask_in_process(analyser, clip, question, device)
        open_s, _, opened = ask_in_process(analyser, clip, OPEN_QUESTION, device)
    if cold_cached or not warm_cached:
        raise RuntimeError("the bench's cold ask found cached features, or its warm ask did not")

    cli_home = fresh_home(work, "home-ask-cli", user_cache)
    args = ["ask", str(clip), question, "--json", "--model", model, "--device", device]
    cli_cold = run_cli(args, cli_home, work / "log-ask-cold")
    cli_warm = run_cli(args, cli_home, work / "log-ask-warm")
    cli_answer = json.loads(cli_warm.stdout.strip().splitlines()[-1])

    common = {"clip": clip.name, "question": question}
    return [
        Figure(
            "ask_warm_in_process",
            "ask, warm (features cached), model loaded",
            warm_s,
            "s",
            "cold: nothing cached, model loaded",
            cold_s,
            "lower",
            {**common, "cold": _shown(cold), "warm": _shown(warm)},
        ),
        Figure(
            "ask_cold_cli",
            "`damo ask` CLI wall time, cold",
            cli_cold.wall_s,
            "s",
            "cold in-process (model already loaded)",
            cold_s,
            "lower",
            {**common, "includes": "process start, imports, model load, decode, encode, fuse, answer"},
        ),
        Figure(
            "ask_warm_cli",
            "`damo ask` CLI wall time, warm",
            cli_warm.wall_s,
            "s",
            "`damo ask` CLI wall time, cold",
            cli_cold.wall_s,
            "lower",
            {**common, "answer": _shown(cli_answer)},
        ),
        Figure(
            "ask_open_question_warm",
            "ask an open question, warm (the LLM writes the answer)",
            open_s,
            "s",
            "warm 'when' question (answered from the evidence)",
            warm_s,
            "lower",
            {"question": OPEN_QUESTION, "result": _shown(opened), "includes": "LLM load and generation"},
        ),
    ]

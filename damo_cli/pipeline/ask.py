"""`damo ask`: the answer to a question about one video, with the moments that support it.

Moments come from the per-time evidence (DaMO's per-time head when trained, the zero-shot bridge, and transcript lines
matched by meaning), combined into one score per step and merged into stretches. The answer text comes from the LLM:
with trained weights, DaMO's soft prompt + transcript + question; without them, the transcript and the best moments
as plain text (the random fusion weights would only confuse it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from damo_cli.encoders.audio import TranscriptSegment
from damo_cli.pipeline.analyse import Analyser, VideoAnalysis
from damo_cli.pipeline.search import query_words
from damo_cli.store import Moment, merge_hits
from damo_cli.timestamps import format_moment

STEP_WEIGHTS = {"fused": 1.0, "bridge": 0.6, "speech": 1.0}
MAX_MOMENTS = 5
KEEP_FRACTION = 0.5  # moments scoring under half the best one are noise, not support
_QUESTION_LEAD = re.compile(
    r"^\s*(?:when|where|at what (?:time|point)|what time|which (?:part|moment)|how long)\b"
    r"(?:\s+(?:does|do|did|is|are|was|were|can|will))?\s*",
    re.IGNORECASE,
)


@dataclass
class AskResult:
    video: Path
    question: str
    answer: str
    moments: list[tuple[float, float, float]]  # (start, end, score), best first
    model: str

    def to_json(self) -> dict:
        return {
            "video": str(self.video),
            "question": self.question,
            "answer": self.answer,
            "moments": [{"start": round(s, 2), "end": round(e, 2), "score": round(x, 4)} for s, e, x in self.moments],
            "model": self.model,
        }


def question_to_query(question: str) -> str:
    """'When does the dog jump?' -> 'the dog jump': the per-time evidence is a description, not a question."""
    query = _QUESTION_LEAD.sub("", question).strip().rstrip("?").strip()
    return query or question


def step_scores(analysis: VideoAnalysis, query_vector: np.ndarray, trained: bool) -> np.ndarray:
    """(N,) evidence per time step: weighted cosines of the per-time channels plus the best matching speech line."""
    scores = STEP_WEIGHTS["bridge"] * (analysis.bridge @ query_vector)
    if trained:
        scores = scores + STEP_WEIGHTS["fused"] * (analysis.fused @ query_vector)
    return scores


def phrase_span(segment: TranscriptSegment, query: str) -> tuple[float, float]:
    """The stretch of a transcript line that says the query's words, or the whole line when it does not.

    Every word window [i, j] scores (distinct query words in it) - 0.1 x (its length), so the tightest window
    holding most of the phrase wins; it is used when it holds at least half of the query's content words.
    """
    wanted = {w.rstrip("s") for w in query_words(query)}
    words = [(w, {t.rstrip("s") for t in query_words(w.text)} & wanted) for w in segment.words]
    if not wanted or not words:
        return segment.start, segment.end
    best, best_score = None, 0.0
    for i in range(len(words)):
        found: set[str] = set()
        for j in range(i, len(words)):
            found |= words[j][1]
            score = len(found) - 0.1 * (j - i + 1)
            if len(found) >= len(wanted) / 2 and score > best_score:
                best, best_score = (i, j), score
    if best is None:
        return segment.start, segment.end
    return words[best[0]][0].start, words[best[1]][0].end


def find_moments(
    analysis: VideoAnalysis, query: str, query_vector: np.ndarray, speech_vectors: np.ndarray, trained: bool
) -> list[tuple[float, float, float]]:
    spans = analysis.step_spans
    scores = step_scores(analysis, query_vector, trained)
    hits = [
        Moment(0, analysis.path, float(s), float(e), float(x), "steps") for (s, e), x in zip(spans, scores, strict=True)
    ]
    speech = speech_vectors @ query_vector if len(speech_vectors) else np.zeros(0)
    lines = [seg for seg in analysis.transcript if seg.text.strip()]
    hits += [
        Moment(0, analysis.path, *phrase_span(seg, query), STEP_WEIGHTS["speech"] * float(x), "speech")
        for seg, x in zip(lines, speech, strict=True)
    ]
    merged = merge_hits(hits, margin=0.05)
    if not merged or merged[0].score <= 0:
        return []
    keep = [m for m in merged if m.score >= KEEP_FRACTION * merged[0].score]
    return [(m.start, m.end, m.score) for m in keep[:MAX_MOMENTS]]


def answer_question(analyser: Analyser, analysis: VideoAnalysis, question: str, device: str) -> AskResult:
    text = analyser.text
    query = question_to_query(question)
    query_vector = text.encode([query])[0]
    lines = [seg for seg in analysis.transcript if seg.text.strip()]
    speech_vectors = text.encode([seg.text for seg in lines]) if lines else np.zeros((0, text.dim), np.float32)
    moments = find_moments(analysis, query, query_vector, speech_vectors, analyser.model.trained)
    answer = _generate(analyser, analysis, question, moments, device)
    return AskResult(analysis.path, question, answer, moments, analyser.model.name)


def _generate(
    analyser: Analyser,
    analysis: VideoAnalysis,
    question: str,
    moments: list[tuple[float, float, float]],
    device: str,
) -> str:
    import torch

    from damo_cli.encoders.llm import load_llm
    from damo_cli.model.damo import Conversation, TranscriptLine

    model = analyser.model
    transcript = [TranscriptLine(s.start, s.end, s.text) for s in analysis.transcript if s.text.strip()]
    if model.trained:
        damo = model.damo
        if damo.llm is None:
            damo.attach_llm(*load_llm(model.card.backbone("llm"), device))
        fusion = torch.from_numpy(analysis.fusion_tokens).to(device)
        spans = torch.from_numpy(analysis.window_spans).float().to(device)
        with torch.inference_mode():
            prompt = damo.soft_prompt(fusion[None], spans[None])
            return damo.generate(prompt, [Conversation.ask(question, transcript)]).texts[0].strip()
    if is_temporal(question):
        return evidence_answer(analysis, moments)
    llm, tokenizer = load_llm(model.card.backbone("llm"), device)
    context = []
    if transcript:
        context.append("Transcript:\n" + "\n".join(f"{format_moment(t.start, t.end)}: {t.text}" for t in transcript))
    if moments:
        best = "; ".join(format_moment(s, e) for s, e, _ in moments[:3])
        context.append(f"The moments of the video that best match the question: {best}.")
    prompt = "\n\n".join([*context, f"Question: {question}\nAnswer briefly, giving times in seconds."])
    from damo_cli.encoders.llm import chat

    reply = chat(llm, tokenizer, prompt, max_new_tokens=model.damo.config.prompt.max_new_tokens)
    return _first_paragraph(reply)


def is_temporal(question: str) -> bool:
    return bool(_QUESTION_LEAD.match(question)) and not question.lower().lstrip().startswith(("where", "how long"))


def evidence_answer(analysis: VideoAnalysis, moments: list[tuple[float, float, float]]) -> str:
    """A 'when' answer stated from the evidence itself: the best moment, and what is said in it."""
    if not moments:
        return "I could not find that moment in this video."
    start, end, _ = moments[0]
    said = [s.text for s in analysis.transcript if s.text.strip() and min(s.end, end) - max(s.start, start) > 0]
    answer = f"{format_moment(start, end).capitalize()}."
    if said:
        answer += f' It is said there: "{" ".join(said)}"'
    return answer


def _first_paragraph(text: str) -> str:
    """Small LLMs run on into a new "Question:" of their own; keep the answer they were asked for."""
    first = re.split(r"\n\s*\n|\n(?:Question|Answer):", text.strip(), maxsplit=1)[0]
    return first.removeprefix("Answer:").strip()

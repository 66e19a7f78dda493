"""One training loop for the four stages (accelerate: CPU, one GPU or many with the same code).

    run_dir/
      stage{N}/log.jsonl       one line per logged step (train losses, lr) and per evaluation (held-out metrics)
      stage{N}/resume/         the latest resumable state: model/ (a damo checkpoint), optimizer.safetensors,
                               state.json (step, settings); written atomically every `checkpoint_every` steps
      stage{N}/final/          the stage's trained weights (a damo checkpoint: safetensors + manifest)
      stage{N}/summary.json    steps, wall time, data sizes, final held-out metrics
      curves.png               loss and held-out curves of every stage run so far

Determinism: the batch of step s is a pure function of (seed, s) and dropout is seeded per step, so a run resumed
from a checkpoint continues exactly as if it had not stopped (tests/test_training.py checks the weights bit for
bit). Learning rate: linear warm-up then cosine decay to 10 %, computed from the step (no scheduler state).

Optimiser: AdamW with weight decay 0.02 (paper). Learning rates differ from the paper's 1e-4 because the budget is
a shared 2-core CPU: stage 1 trains the fuser from scratch on a small dataset (5e-4), the LLM stages get a few dozen
steps (2e-4). TRAINING.md gives the numbers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from damo_cli.cards import ModelCard
from damo_cli.integrity import atomic_dir
from damo_cli.model.checkpoint import load_checkpoint, save_checkpoint
from damo_cli.model.config import DamoConfig
from damo_cli.model.damo import ClipFeatures, Conversation, DamoModel, TranscriptLine, step_timing
from damo_cli.model.localize import DEFAULT_SETTINGS, LocalizeSettings, localize
from damo_cli.training import losses
from damo_cli.training.datasets import LMExample, TrainVideo, batches, coverage
from damo_cli.training.losses import LossWeights
from damo_cli.training.stages import set_trainable

# ============================================================================================= settings


@dataclass(frozen=True)
class StageSettings:
    stage: int
    steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.02
    warmup_steps: int = 20
    seed: int = 0
    eval_every: int = 100
    checkpoint_every: int = 100
    log_every: int = 10
    grad_clip: float = 1.0
    weights: LossWeights = field(default_factory=LossWeights)


STAGE_DEFAULTS: dict[int, StageSettings] = {
    1: StageSettings(stage=1, steps=400, batch_size=16, learning_rate=5e-4, warmup_steps=30, eval_every=50,
                     checkpoint_every=50),
    # LLM stages: ~25 s per step of 4 conversations on a busy 2-core CPU, so a few dozen steps; the peak rate is
    # 2e-4 (twice the paper's) because there are so few of them
    2: StageSettings(stage=2, steps=12, batch_size=4, learning_rate=2e-4, warmup_steps=2, eval_every=6,
                     checkpoint_every=6, log_every=2),
    3: StageSettings(stage=3, steps=24, batch_size=4, learning_rate=2e-4, warmup_steps=2, eval_every=12,
                     checkpoint_every=6, log_every=2),
    4: StageSettings(stage=4, steps=10, batch_size=2, learning_rate=2e-4, warmup_steps=2, eval_every=5,
                     checkpoint_every=5, log_every=1),
}  # fmt: skip


def learning_rate(settings: StageSettings, step: int) -> float:
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    span = max(1, settings.steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    return settings.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# ============================================================================================= text tables


class TextTable:
    """Frozen text-encoder embeddings of every query, caption and ImageNet class prompt, computed once."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray]) -> None:
        self._encode = encode
        self.vectors: dict[str, Tensor] = {}

    def add(self, texts: Sequence[str]) -> None:
        missing = sorted({t for t in texts if t not in self.vectors})
        if missing:
            for text, vector in zip(missing, self._encode(missing), strict=True):
                self.vectors[text] = torch.from_numpy(np.asarray(vector, dtype=np.float32))

    def __call__(self, texts: Sequence[str]) -> Tensor:
        self.add(texts)
        return torch.stack([self.vectors[t] for t in texts]) if texts else torch.zeros(0, 384)


def class_table(text: TextTable) -> Tensor:
    """(1000, D) unit embeddings of the ImageNet class prompts: the zero-shot bridge's vocabulary, worded with the
    bridge's own prompts (pipeline.bridge.PROMPTS), so the stage-1 teacher is the bridge that search and ask use."""
    from damo_cli.encoders.visual import imagenet_class_names
    from damo_cli.pipeline.bridge import PROMPTS

    names = imagenet_class_names()
    table = torch.stack([text([prompt.format(n) for n in names]) for prompt in PROMPTS]).mean(0)
    return nn.functional.normalize(table, dim=-1)


# ============================================================================================= batches


@dataclass
class Batch:
    clip: ClipFeatures
    queries: Tensor  # (Q, D)
    owner: Tensor  # (Q,) long
    labels: Tensor  # (Q, B, T') coverage
    captions: Tensor  # (B, D)
    same_video: Tensor  # (B, B) bool
    teacher: Tensor | None  # (B, T', D) bridge vectors of each step's frames
    conversations: list[Conversation] | None = None

    def to(self, device: torch.device | str) -> Batch:
        clip = ClipFeatures(**{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in vars(self.clip).items()})
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in vars(self).items() if k != "clip"}
        return Batch(clip=clip, **moved)


def make_batch(
    videos: Sequence[TrainVideo],
    config: DamoConfig,
    text: TextTable,
    classes: Tensor | None,
    rng: np.random.Generator,
    conversations: list[Conversation] | None = None,
) -> Batch:
    clip = ClipFeatures.collate([v.clip(config) for v in videos])
    assert clip.frame_mask is not None
    _, spans = step_timing(clip.frame_times, clip.frame_mask, config.conv_stride)  # (B, T', 2), as the model's
    spans_np = spans.double().numpy()
    query_texts, owners, rows = [], [], []
    for b, video in enumerate(videos):
        for q in video.queries:
            query_texts.append(q.query)
            owners.append(b)
            # positive wherever the same event (signature) happens, in this video or another of the batch
            rows.append(
                np.stack([coverage(spans_np[c], other.signature_windows.get(q.signature, [])) for c, other in
                          enumerate(videos)])
            )  # fmt: skip
    labels = torch.from_numpy(np.stack(rows)).float() if rows else torch.zeros(0, len(videos), spans.shape[1])
    captions = text([v.captions[int(rng.integers(len(v.captions)))] for v in videos])
    vids = [v.vid for v in videos]
    same = torch.tensor([[a == b for b in vids] for a in vids])
    teacher = None
    if classes is not None:
        teacher = _bridge_teacher(videos, clip, classes, config.conv_stride, spans.shape[1])
    return Batch(clip, text(query_texts), torch.tensor(owners, dtype=torch.long), labels, captions, same, teacher,
                 conversations)  # fmt: skip


def _bridge_teacher(
    videos: Sequence[TrainVideo], clip: ClipFeatures, classes: Tensor, stride: int, steps: int
) -> Tensor:
    """Per step: the unit mean of its frames' bridge vectors (top-10 class probabilities over class embeddings)."""
    out = torch.zeros(len(videos), steps, classes.shape[1])
    for b, video in enumerate(videos):
        f = video.features
        keep = torch.ones(len(f.frame_times), dtype=torch.bool)
        if video.window is not None:  # the frames of this clip only, as ClipFeatures.window picks them
            keep = (f.frame_times >= video.window[0]) & (f.frame_times < video.window[1])
        probs = f.class_prob[keep].float()
        probs = probs / probs.sum(-1, keepdim=True)
        frames = torch.einsum("nk,nkd->nd", probs, classes[f.class_index[keep].long()])  # (N, D)
        n = frames.shape[0]
        index = torch.arange(n) // stride
        summed = torch.zeros(steps, classes.shape[1]).index_add_(0, index, frames)
        out[b] = nn.functional.normalize(summed, dim=-1)
    return out


def conversation_for(video: TrainVideo, turns: list[tuple[str, str]]) -> Conversation:
    return Conversation(list(turns), [TranscriptLine(s, e, t) for s, e, t in video.transcript])


# ============================================================================================= the module


class StageModule(nn.Module):
    """The DaMO model plus what one stage's loss needs; `forward(batch)` returns the named loss terms."""

    def __init__(self, damo: DamoModel, stage: int, weights: LossWeights) -> None:
        super().__init__()
        self.damo, self.stage, self.weights = damo, stage, weights
        self.match_bias = nn.Parameter(torch.tensor(-5.0))  # training aid of the sigmoid loss; not in checkpoints

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        fused = self.damo.fuse(batch.clip)
        w = self.weights
        scale = self.damo.time_head.logit_scale.exp().clamp(max=100.0)
        steps, mask = fused.step_embeddings, fused.step_mask
        parts: dict[str, Tensor] = {}
        if len(batch.owner):
            parts["temporal"] = losses.temporal_nce(steps, mask, batch.queries, batch.owner, batch.labels, scale)
            parts["match"] = losses.match_loss(steps, mask, batch.queries, batch.labels, self.match_bias)
        parts["clip"] = losses.clip_nce(fused.clip_embedding, batch.captions, batch.same_video, scale)
        if batch.teacher is not None and w.bridge > 0:
            parts["bridge"] = losses.bridge_loss(steps, mask, batch.teacher)
        if self.stage >= 2 and batch.conversations:
            parts["lm"] = self.damo.lm_loss(self.damo.clip_prompt(fused), batch.conversations)
        weight = {"temporal": w.temporal, "match": w.match, "clip": w.clip, "bridge": w.bridge, "lm": w.lm}
        parts["loss"] = sum(weight[k] * v for k, v in parts.items())  # type: ignore[assignment]
        return parts


# ============================================================================================= state files


def _optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# ============================================================================================= the trainer


@dataclass
class StageData:
    train: list[TrainVideo]
    val: list[TrainVideo]
    examples: list[LMExample] = field(default_factory=list)  # stages 2-4: conversations over `train`
    val_examples: list[LMExample] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        damo: DamoModel,
        card: ModelCard,
        settings: StageSettings,
        data: StageData,
        text: TextTable,
        run_dir: Path,
        device: str = "cpu",
        classes: Tensor | None = None,
        localize_settings: LocalizeSettings = DEFAULT_SETTINGS,
        progress: bool = True,
    ) -> None:
        from accelerate import Accelerator

        self.card, self.settings, self.data, self.text = card, settings, data, text
        self.stage = settings.stage
        self.stage_dir = Path(run_dir) / f"stage{self.stage}"
        self.run_dir = Path(run_dir)
        self.classes = classes if settings.weights.bridge > 0 else None
        self.localize_settings = localize_settings
        self.show_progress = progress
        self.accelerator = Accelerator(cpu=device == "cpu")
        self.counts = set_trainable(damo, self.stage)
        self.module = StageModule(damo, self.stage, settings.weights)
        params = [p for p in self.module.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]  # norms, biases, gains, queries' scale: no weight decay
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=settings.learning_rate,
        )
        self.module, self.optimizer = self.accelerator.prepare(self.module, optimizer)
        self.step = 0
        self.elapsed = 0.0
        self.stage_dir.mkdir(parents=True, exist_ok=True)

    @property
    def damo(self) -> DamoModel:
        return self.accelerator.unwrap_model(self.module).damo

    # ------------------------------------------------------------------------------------ batches

    def _items(self) -> int:
        return len(self.data.train) if self.stage == 1 else len(self.data.examples)

    def batch_for(self, step: int) -> Batch:
        """The batch of `step` for this process: a pure function of (seed, step)."""
        s = self.settings
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        per_epoch = max(1, self._items() // (s.batch_size * world))
        epoch, index = divmod(step, per_epoch)
        order = list(batches(self._items(), s.batch_size * world, s.seed, epoch))
        picked = order[index][rank * s.batch_size : (rank + 1) * s.batch_size]
        rng = np.random.default_rng([s.seed, step, 7])
        if self.stage == 1:
            videos = [self.data.train[i] for i in picked]
            return make_batch(videos, self.damo.config, self.text, self.classes, rng)
        examples = [self.data.examples[i] for i in picked]
        return self._lm_batch(examples, self.data.train, rng)

    def _lm_batch(self, examples: Sequence[LMExample], pool: Sequence[TrainVideo], rng: np.random.Generator) -> Batch:
        videos = [pool[e.video] for e in examples]
        conversations = [conversation_for(pool[e.video], e.turns) for e in examples]
        return make_batch(videos, self.damo.config, self.text, self.classes, rng, conversations)

    # ------------------------------------------------------------------------------------ run

    def run(self, resume: bool = True) -> dict[str, Any]:
        s = self.settings
        if self._items() < s.batch_size * self.accelerator.num_processes:
            from damo_cli.data.errors import DataError

            raise DataError(f"stage {self.stage}: {self._items()} training items, fewer than one batch")
        if resume:
            self.load_resume()
        log = self.stage_dir / "log.jsonl"
        main = self.accelerator.is_main_process
        progress, task = self._progress_bar()
        started = time.perf_counter() - self.elapsed
        self.module.train()
        running: dict[str, float] = {}
        try:
            while self.step < s.steps:
                step = self.step
                torch.manual_seed(s.seed * 1_000_003 + step)  # dropout of step s is the same after a resume
                lr = learning_rate(s, step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = self.batch_for(step).to(self.accelerator.device)
                parts = self.module(batch)
                self.accelerator.backward(parts["loss"])
                if s.grad_clip:
                    self.accelerator.clip_grad_norm_(self.module.parameters(), s.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                for key, value in parts.items():
                    running[key] = running.get(key, 0.0) + float(value.detach())
                running["_n"] = running.get("_n", 0.0) + 1
                if main and (self.step % s.log_every == 0 or self.step == s.steps):
                    n = running.pop("_n")
                    record = {"stage": self.stage, "step": self.step, "split": "train", "lr": lr,
                              "seconds": round(time.perf_counter() - started, 2),
                              **{k: round(v / n, 5) for k, v in running.items()}}  # fmt: skip
                    _append(log, record)
                    running = {}
                    if progress is not None:
                        progress.update(task, completed=self.step, loss=record.get("loss", math.nan))
                elif progress is not None:
                    progress.update(task, completed=self.step)
                if self.step % s.eval_every == 0 or self.step == s.steps:
                    metrics = self.evaluate()
                    self.module.train()
                    if main:
                        _append(log, {"stage": self.stage, "step": self.step, "split": "val", **metrics})
                if self.step % s.checkpoint_every == 0 and self.step < s.steps:
                    self.elapsed = time.perf_counter() - started
                    self.save_resume()
        finally:
            if progress is not None:
                progress.stop()
        self.elapsed = time.perf_counter() - started
        summary: dict[str, Any] = {}
        if main:
            save_checkpoint(self.damo, self.stage_dir / "final", self.stage, self.card,
                            extra={"steps": self.step, "settings": _jsonable(asdict(s))})  # fmt: skip
            self.save_resume()
            summary = self.summary()
            (self.stage_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            plot_curves(self.run_dir)
        self.accelerator.wait_for_everyone()
        return summary

    def summary(self) -> dict[str, Any]:
        records = read_log(self.stage_dir / "log.jsonl")
        val = [r for r in records if r.get("split") == "val"]
        train = self.data.train
        return {
            "stage": self.stage,
            "steps": self.step,
            "seconds": round(self.elapsed, 1),
            "train_videos": len(self.data.train),
            "val_videos": len(self.data.val),
            "train_examples": len(self.data.examples) if self.stage > 1 else sum(len(v.queries) for v in train),
            "trainable_parameters": self.counts,
            "settings": _jsonable(asdict(self.settings)),
            "final_val": val[-1] if val else {},
        }

    def _progress_bar(self) -> tuple[Any, Any]:
        if not (self.show_progress and self.accelerator.is_main_process):
            return None, None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn(f"stage {self.stage}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), transient=False,
        )  # fmt: skip
        task = progress.add_task("train", total=self.settings.steps, completed=self.step, loss=math.nan)
        progress.start()
        return progress, task

    # ------------------------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Held-out (validation videos of the training split) grounding from the per-time head; LM loss for 2-4."""
        self.module.eval()
        metrics = grounding_metrics(self.damo, self.data.val, self.text, self.localize_settings)
        if self.stage >= 2 and self.data.val_examples:
            rng = np.random.default_rng(0)
            total, count = 0.0, 0
            examples = self.data.val_examples
            for start in range(0, len(examples), self.settings.batch_size):
                chunk = examples[start : start + self.settings.batch_size]
                batch = self._lm_batch(chunk, self.data.val, rng).to(self.accelerator.device)
                fused = self.damo.fuse(batch.clip)
                assert batch.conversations is not None
                total += float(self.damo.lm_loss(self.damo.clip_prompt(fused), batch.conversations)) * len(chunk)
                count += len(chunk)
            metrics["lm_loss"] = round(total / max(count, 1), 5)
        return metrics

    # ------------------------------------------------------------------------------------ resume

    def save_resume(self) -> None:
        if not self.accelerator.is_main_process:
            return
        from safetensors.torch import save_file

        tensors, meta = _optimizer_tensors(self.optimizer.state_dict())
        module = self.accelerator.unwrap_model(self.module)
        tensors["__match_bias"] = module.match_bias.detach().cpu().reshape(1)
        with atomic_dir(self.stage_dir / "resume") as tmp:
            save_checkpoint(self.damo, tmp / "model", self.stage, self.card, extra={"step": self.step})
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            state = {"step": self.step, "elapsed": self.elapsed, "optimizer": meta,
                     "settings": _jsonable(asdict(self.settings))}  # fmt: skip
            (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")

    def load_resume(self) -> bool:
        folder = self.stage_dir / "resume"
        if not (folder / "state.json").is_file():
            return False
        from safetensors.torch import load_file

        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        load_checkpoint(self.damo, folder / "model", self.card, allow_card_edits=True)
        tensors = load_file(str(folder / "optimizer.safetensors"))
        bias = tensors.pop("__match_bias")
        with torch.no_grad():
            self.accelerator.unwrap_model(self.module).match_bias.copy_(bias.reshape(()))
        self.optimizer.load_state_dict(_optimizer_state(tensors, state["optimizer"]))
        self.step, self.elapsed = int(state["step"]), float(state.get("elapsed", 0.0))
        return True


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ============================================================================================= metrics


@torch.no_grad()
def fuse_videos(damo: DamoModel, videos: Sequence[TrainVideo], batch_size: int = 8) -> list[tuple[Tensor, Tensor]]:
    """(step embeddings, step spans) of each video (one window each: composed clips are shorter than a window)."""
    out: list[tuple[Tensor, Tensor]] = []
    device = next(damo.parameters()).device
    for start in range(0, len(videos), batch_size):
        chunk = videos[start : start + batch_size]
        clip = ClipFeatures.collate([v.clip(damo.config) for v in chunk])
        clip = ClipFeatures(**{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in vars(clip).items()})
        fused = damo.fuse(clip)
        for row in range(len(chunk)):
            keep = fused.step_mask[row]
            out.append((fused.step_embeddings[row, keep].cpu(), fused.step_spans[row, keep].cpu()))
    return out


def grounding_metrics(
    damo: DamoModel, videos: Sequence[TrainVideo], text: TextTable, settings: LocalizeSettings = DEFAULT_SETTINGS
) -> dict[str, Any]:
    """R1@0.3/0.5/0.7 and mIoU (percent) of the per-time head's top-1 moment, overall and R1@0.5 per kind."""
    from damo_cli.schema import temporal_iou

    if not videos:
        return {}
    was_training = damo.training
    damo.eval()
    fused = fuse_videos(damo, videos)
    damo.train(was_training)
    ious: list[float] = []
    kinds: dict[str, list[float]] = {}
    for video, (steps, spans) in zip(videos, fused, strict=True):
        vectors = text([q.query for q in video.queries])
        for q, vector in zip(video.queries, vectors, strict=True):
            moments = localize(steps, spans, vector, k=1, settings=settings)
            top = np.array(moments[0][:2]) if moments else np.array([np.nan, np.nan])
            iou = float(temporal_iou(top[None, :], np.asarray(q.windows)).max())
            ious.append(iou)
            kinds.setdefault(q.kind or "all", []).append(iou)
    arr = np.asarray(ious)
    out: dict[str, Any] = {f"R1@{m:g}": round(float((arr >= m - 1e-9).mean()) * 100, 2) for m in (0.3, 0.5, 0.7)}
    out["mIoU"] = round(float(arr.mean()) * 100, 2)
    out["per_kind_R1@0.5"] = {k: round(float((np.asarray(v) >= 0.5 - 1e-9).mean()) * 100, 1) for k, v in kinds.items()}
    out["queries"] = len(arr)
    return out


# ============================================================================================= curves


def plot_curves(run_dir: Path) -> Path | None:
    """curves.png: per stage, the training loss (and its terms) and the held-out metrics, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [(n, read_log(Path(run_dir) / f"stage{n}" / "log.jsonl")) for n in (1, 2, 3, 4)]
    stages = [(n, r) for n, r in stages if r]
    if not stages:
        return None
    fig, axes = plt.subplots(2, len(stages), figsize=(4.2 * len(stages), 6.4), squeeze=False)
    for col, (n, records) in enumerate(stages):
        train = [r for r in records if r["split"] == "train"]
        val = [r for r in records if r["split"] == "val"]
        ax = axes[0, col]
        for key in ("loss", "temporal", "match", "clip", "bridge", "lm"):
            points = [(r["step"], r[key]) for r in train if key in r]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=key, linewidth=2.0 if key == "loss" else 1.0)
        ax.set_title(f"stage {n}: training loss")
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax = axes[1, col]
        for key in ("R1@0.5", "mIoU"):
            points = [(r["step"], r[key]) for r in val if key in r]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=f"val {key} (per-time head)")
        ax.set_ylabel("percent")
        ax.set_xlabel("step")
        lm = [(r["step"], r["lm_loss"]) for r in val if "lm_loss" in r]
        if lm:
            twin = ax.twinx()
            xs, ys = zip(*lm, strict=True)
            twin.plot(xs, ys, color="black", linestyle="--", marker="x", label="val LM loss")
            twin.set_ylabel("LM loss")
            twin.legend(fontsize=7, loc="lower right")
        ax.set_title(f"stage {n}: validation videos (train split)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out

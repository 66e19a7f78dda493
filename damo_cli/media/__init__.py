"""Media decoding: probe a file, sample upright frames with their real timestamps, read 16 kHz mono audio.

Every failure on a user's file is a typed `damo_cli.errors.MediaError` whose message is one line naming the file;
no decoder exception or native log line reaches the user.
"""

from damo_cli.media.audio import AudioWindow, iter_audio_windows, load_audio
from damo_cli.media.frames import FrameBatch, FrameReader, iter_frame_windows, sample_frames
from damo_cli.media.probe import MediaInfo, probe

__all__ = [
    "AudioWindow",
    "FrameBatch",
    "FrameReader",
    "MediaInfo",
    "iter_audio_windows",
    "iter_frame_windows",
    "load_audio",
    "probe",
    "sample_frames",
]

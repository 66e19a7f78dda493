"""Third-party progress bars off where damo loads models: the CLI shows its own one-line status instead.

transformers draws a "Loading weights" tqdm bar for every `from_pretrained` and a "Writing model shards" bar on save
(both behind `transformers.utils.logging.disable_progress_bar()`, which also turns off huggingface_hub's bars); its
GGUF reader draws "Converting and de-quantizing GGUF tensors" with `tqdm.auto` directly, behind no switch, so that
one is turned off for the conversion only (`quiet_gguf`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager


def quiet_transformers() -> None:
    """No progress bars from transformers and huggingface_hub, and only their errors logged (process-wide)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # transformers' tqdm switch; it calls huggingface_hub's disable_progress_bars()
    logging.getLogger("transformers").setLevel(logging.ERROR)


@contextmanager
def quiet_gguf() -> Iterator[None]:
    """While the block runs, transformers' GGUF reader draws no progress bar."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original

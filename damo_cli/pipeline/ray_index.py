"""`damo index --ray`: decode and encode on a Ray cluster, store in this process.

Ray Data runs over the list of files that need encoding: one `map_batches` stage whose callable class is a Ray actor
holding one loaded `Analyser` (the model loads once per actor), analysing one video per call through the same
feature path as a single-process index (`Analyser.analyse` -> `FeatureExtractor.extract`). Each analysis streams
back to the driver (`iter_rows`), where `Indexer.run` stores it exactly as it stores one analysed here: one
transaction per video by the one library writer, so an interrupted run keeps everything already stored.

A file that fails on a worker comes back as its one-line error and is recorded as failed, as the single-process path
records it; the run goes on. Workers must see the files at the same paths (one machine, or shared storage) and have
damo-cli installed with the same model (checked: an analysis made by a different model or damo is refused).

Ray is an optional extra (`pip install 'damo-cli[ray]'`) and is imported only when `--ray` is used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from damo_cli.errors import DamoError, UsageError
from damo_cli.pipeline import feature_cache
from damo_cli.pipeline.analyse import Analyser, VideoAnalysis
from damo_cli.pipeline.indexer import Indexer
from damo_cli.store import Lookup

INSTALL_HINT = "--ray needs Ray, which is not installed: pip install 'damo-cli[ray]'"
PASSED_ENV = ("DAMO_HOME",)  # where damo keeps derived weights and caches: the same on local workers as here


@dataclass(frozen=True)
class RayPlan:
    """Where and how `damo index --ray` runs.

    address: "auto" (RAY_ADDRESS, else the cluster `ray start` left on this machine, else a new local instance) or a
    cluster's address ("HOST:PORT"). actors: how many encoders (None: one per GPU of the cluster when the workers use
    GPUs, else one per CPU). device: the workers' device; "auto" uses a GPU per actor when the cluster has GPUs.
    """

    address: str = "auto"
    actors: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.address not in ("auto", "local"):
            _host_port(self.address)  # a malformed address fails here, before any model loads


def require_ray() -> None:
    """Fail in one line, before any model loads, when the extra is not installed."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
        raise UsageError(INSTALL_HINT)


def _import_ray() -> ModuleType:
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is part of the extra
    except ImportError as err:
        raise UsageError(INSTALL_HINT) from err
    return ray


def _host_port(address: str) -> tuple[str, int]:
    """HOST:PORT of a cluster address (a ray:// client address too), or a one-line usage error."""
    bare = address.split("://", 1)[-1].rstrip("/")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray: expected auto or a cluster address HOST:PORT, got {address!r}")
    return host, int(port)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray's own connect retries for minutes when nothing listens there; a plain TCP connect says so in seconds."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise DamoError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from err


@contextmanager
def connected(address: str) -> Iterator[ModuleType]:
    """Ray, connected to `address` ("auto": see `RayPlan`). A connection the caller already made (a test, a
    notebook) is used and left open; one made here is closed afterwards (a local instance started here stops)."""
    # Ray's C++ core writes a warning per actor (and retries) straight to stderr, between damo's per-file lines; at
    # "fatal" it says only that it read this setting, once. A failure that matters reaches damo as a Python
    # exception, reported in one line. A level the user set is kept.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    if target and target not in ("auto", "local"):
        _check_reachable(target)
    try:
        # log_to_driver=False: the workers' own logs would interleave with the per-file lines
        ray.init(address=None if address == "auto" else address, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as err:  # ConnectionError, ValueError, RuntimeError, or Ray's own: all mean "no cluster there"
        raise DamoError(f"cannot connect to the Ray cluster at {target or address}: {one_line(err)}") from err
    try:
        yield ray
    finally:
        ray.shutdown()


# ------------------------------------------------------------------------------------------------ the workers
class VideoEncoder:
    """A Ray Data actor: loads the model once, then analyses the videos of each batch it is given."""

    def __init__(self, model_source: str, device: str, threads: int) -> None:
        import torch

        from damo_cli.pipeline.loading import load_model

        torch.set_num_threads(threads)  # what this actor reserved, not every core of its node
        os.environ["DAMO_THREADS"] = str(threads)
        self.analyser = Analyser(load_model(model_source, device), device)
        self.host = socket.gethostname()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        analyses: list[bytes] = []
        errors: list[str] = []
        for name in batch["path"]:
            blob, error = self._analyse(Path(str(name)))
            analyses.append(blob)
            errors.append(error)
        return {
            "path": batch["path"],
            "analysis": np.array(analyses, dtype=object),
            "error": np.array(errors, dtype=object),
            "fingerprint": np.array([self.analyser.fingerprint] * len(analyses), dtype=object),
            "host": np.array([self.host] * len(analyses), dtype=object),
        }

    def _analyse(self, path: Path) -> tuple[bytes, str]:
        """(the pickled analysis, "") or (b"", the one-line error): a bad file must not end the whole run."""
        if not path.exists():
            return b"", f"{path}: not found on Ray worker {self.host} (workers need the same paths: shared storage)"
        try:
            return pickle.dumps(self.analyser.analyse(path), protocol=pickle.HIGHEST_PROTOCOL), ""
        except Exception as err:  # reported per file like the single-process path; the driver records it
            return b"", one_line(err)


def one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ------------------------------------------------------------------------------------------------- the driver
@dataclass(frozen=True)
class Workers:
    actors: int
    cpus: float  # reserved per actor
    gpus: float
    device: str  # what each actor runs its models on


def worker_resources(resources: dict[str, float], plan: RayPlan, files: int) -> Workers:
    """The actor pool for a cluster with `resources` (`ray.cluster_resources()`). More actors than the cluster has
    CPUs or GPUs share them (a fraction each) rather than wait for ones that never come."""
    cpus, gpus = float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
    device = plan.device.split(":")[0]  # on a worker, Ray makes its own GPU the only one it sees
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device == "cuda" and not gpus:
        raise DamoError("--device cuda with --ray: the Ray cluster has no GPUs")
    default = int(gpus) if device == "cuda" else int(cpus)
    actors = max(1, min(plan.actors or default, files))
    per_gpu = min(1.0, gpus / actors) if device == "cuda" else 0.0
    return Workers(actors, min(1.0, cpus / actors), per_gpu, device)


def analyse_on_ray(
    todo: list[Lookup],
    model_source: str,
    fingerprint: str,
    plan: RayPlan,
    on_event: Callable[[str, Path, str], None],
) -> Iterator[tuple[Lookup, VideoAnalysis | BaseException]]:
    """Each file's analysis (or its error), as the workers finish them (not in the order given)."""
    with connected(plan.address) as ray:
        from ray.data import ActorPoolStrategy, DataContext

        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its INFO / WARNING lines would interleave with ours
        context = DataContext.get_current()
        context.enable_progress_bars = False  # damo prints its own per-file lines and progress bar
        context.print_on_execution_start = False
        workers = worker_resources(ray.cluster_resources(), plan, len(todo))
        env = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
        dataset = ray.data.from_items([{"path": str(look.path)} for look in todo], override_num_blocks=len(todo))
        analysed = dataset.map_batches(
            VideoEncoder,
            fn_constructor_kwargs={"model_source": model_source, "device": workers.device, "threads": 1},
            batch_size=1,  # one video per call: results stream back one by one
            batch_format="numpy",
            # one video at a time per actor, so a file never waits behind an actor still loading the model
            compute=ActorPoolStrategy(size=workers.actors, max_tasks_in_flight_per_actor=1),
            num_cpus=workers.cpus,
            num_gpus=workers.gpus,
            runtime_env={"env_vars": env},
        )
        by_path = {str(look.path): look for look in todo}
        for row in analysed.iter_rows():
            look = by_path[str(row["path"])]
            on_event("start", look.path, "")
            if row["error"]:
                yield look, DamoError(str(row["error"]))
            elif row["fingerprint"] != fingerprint:  # its features or model differ from what this library holds
                theirs = f"Ray worker {row['host']} analyses with {row['fingerprint']}, this library with {fingerprint}"
                yield look, DamoError(f"{theirs}: install the same damo-cli and model on the workers")
            else:
                yield look, pickle.loads(row["analysis"])


class RayIndexer(Indexer):
    """`Indexer` whose analyses come from a Ray cluster; looking up, storing and reporting are the base class's."""

    def __init__(self, *args: Any, plan: RayPlan, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = plan

    def _analyse_all(self, todo: list[Lookup], on_event) -> Iterator[tuple[Lookup, VideoAnalysis | BaseException]]:  # noqa: ANN001
        remote: list[Lookup] = []
        for look in todo:  # an analysis this model already made (an `ask` on the file) needs no worker
            cached = feature_cache.load(look.path, look.content_key, self.fingerprint)
            if cached is None:
                remote.append(look)
            else:
                on_event("start", look.path, "")
                yield look, cached
        if remote:
            yield from analyse_on_ray(remote, self.model_name, self.fingerprint, self.plan, on_event)

"""Imports run one way (docs/architecture.md): media and encoders know nothing of the pipeline, the store or the CLI,
and what `damo ask` and `damo search` load never pulls in training, evaluation or data-making code.

Each check imports modules in a fresh interpreter and reads `sys.modules` afterwards; a static pass over the same
files catches imports made lazily inside functions, which importing the module alone does not run.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "damo_cli"

ASK_AND_SEARCH = (
    "damo_cli.pipeline.ask",
    "damo_cli.pipeline.search",
    "damo_cli.pipeline.indexer",
    "damo_cli.pipeline.analyse",
    "damo_cli.commands.library_cmds",
    "damo_cli.api",
    "damo_cli.server.client",
)
OFFLINE_ONLY = ("damo_cli.training", "damo_cli.evaluation", "damo_cli.data")
LOWER_LAYERS = ("damo_cli.media", "damo_cli.encoders")
UPPER_LAYERS = ("damo_cli.pipeline", "damo_cli.store", "damo_cli.commands")

_PROBE = """
import importlib, json, sys
forbidden = tuple(sys.argv[1].split(","))
seen = {}
for name in sys.argv[2:]:
    before = set(sys.modules)
    importlib.import_module(name)
    seen[name] = sorted(m for m in set(sys.modules) - before if m.startswith(forbidden))
print(json.dumps(seen))
"""


def modules_of(package: str) -> list[str]:
    """`package` and every module under it, by file."""
    root = PACKAGE.parent
    folder = root / package.replace(".", "/")
    names = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def pulled_in(modules: list[str] | tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """For each module imported in turn by a fresh interpreter: the forbidden modules its import added."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(forbidden), *modules],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PACKAGE.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return {name: found for name, found in json.loads(result.stdout).items() if found}


def imports_in(module: str) -> set[str]:
    """Every damo_cli module `module`'s source imports, at the top or inside a function."""
    parts = module.split(".")
    path = PACKAGE.parent.joinpath(*parts).with_suffix(".py")
    if not path.exists():
        path = PACKAGE.parent.joinpath(*parts, "__init__.py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("damo_cli")}


def reaching(modules: list[str] | tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    hits = {m: sorted(i for i in imports_in(m) if i.startswith(forbidden)) for m in modules}
    return {m: found for m, found in hits.items() if found}


def test_ask_and_search_load_no_training_evaluation_or_data_code():
    assert pulled_in(ASK_AND_SEARCH, OFFLINE_ONLY) == {}


def test_the_inference_path_never_imports_training_evaluation_or_data_even_lazily():
    packages = ("damo_cli.model", "damo_cli.pipeline", "damo_cli.store")
    inference = [*(m for package in packages for m in modules_of(package)), "damo_cli.commands.library_cmds"]
    inference += ["damo_cli.api", *modules_of("damo_cli.server"), "damo_cli.commands.serve_cmd"]
    assert reaching(inference, OFFLINE_ONLY) == {}


def test_the_server_is_loaded_only_by_damo_serve_and_import_damo_cli_loads_nothing_heavy():
    """`damo ask` and `damo search` read the discovery file and talk HTTP; the server itself is `damo serve`'s."""
    assert pulled_in([*ASK_AND_SEARCH, "damo_cli.cli"], ("damo_cli.server.app",)) == {}
    every = [m for m in modules_of("damo_cli") if m != "damo_cli.server.app"]
    importers = {m for m in every if "damo_cli.server.app" in imports_in(m)}
    assert importers == {"damo_cli.commands.serve_cmd"}
    assert pulled_in(["damo_cli"], ("torch", "numpy", "damo_cli.pipeline", "damo_cli.store")) == {}


def test_media_and_encoders_do_not_import_the_pipeline_store_or_cli():
    lower = [m for package in LOWER_LAYERS for m in modules_of(package)]
    assert len(lower) > 5  # the walk found the modules
    assert pulled_in(lower, UPPER_LAYERS) == {}
    assert reaching(lower, UPPER_LAYERS) == {}


# trainer.py (owned elsewhere) still reads temporal_iou from evaluation.grounding inside a function; the only crossing
# left, to be removed when that import moves below both packages. Nothing else may cross in either direction.
def test_evaluation_and_training_do_not_import_each_other_even_lazily():
    """Both read annotations and find videos through `damo_cli.schema`, below them both."""
    evaluation, training = modules_of("damo_cli.evaluation"), modules_of("damo_cli.training")
    assert len(evaluation) > 3 and len(training) > 3  # the walk found the modules
    assert reaching(evaluation, ("damo_cli.training",)) == {}
    assert reaching(training, ("damo_cli.evaluation",)) == {}


def test_the_schema_module_is_low_in_the_import_order():
    """`damo_cli.schema` imports only the standard library, numpy and `damo_cli.errors`."""
    assert imports_in("damo_cli.schema") <= {"damo_cli.errors", "damo_cli.errors.SchemaError"}
    found = pulled_in(["damo_cli.schema"], ("damo_cli.", "torch"))
    assert set(found.get("damo_cli.schema", [])) <= {"damo_cli.errors", "damo_cli.schema"}

"""The data sub-package's typed error: one line a user can act on, printed by the CLI without a traceback."""

from __future__ import annotations

from damo_cli.errors import DamoError, SchemaError


class DataError(DamoError):
    """Training data cannot be built, fetched, read or converted (missing footage, bad annotation line...)."""

    exit_code = 7  # 6 is StoreError


class AnnotationError(DataError, SchemaError):
    """A bad annotation line read by `damo data augment`, `damo train` or `damo finetune`: names the file and line."""

    exit_code = 7

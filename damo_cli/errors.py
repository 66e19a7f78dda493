"""Typed errors whose message is one line a user can act on; the CLI prints it and exits non-zero."""

from __future__ import annotations


class DamoError(Exception):
    """Base class: `str(err)` is the one line shown to the user."""

    exit_code: int = 1


class UsageError(DamoError):
    """An argument that cannot be used as given (an empty query, a URL where a file is expected); exit 2 as click's."""

    exit_code = 2


class MediaError(DamoError):
    """The file cannot be used as media (missing, unreadable, not media, corrupt, no video stream...)."""

    exit_code = 2


class MissingPathError(MediaError):
    pass


class NotAFileError(MediaError):
    pass


class PermissionDeniedError(MediaError):
    pass


class EmptyFileError(MediaError):
    pass


class NotMediaError(MediaError):
    pass


class CorruptMediaError(MediaError):
    pass


class NoVideoStreamError(MediaError):
    pass


class SchemaError(DamoError):
    """An annotation file breaks the one schema (`damo_cli/schema.py`, docs/architecture.md §4); the message names
    the file and the line. Verbs raise a subclass that keeps their own exit code (`EvaluationFileError`: 5,
    `damo_cli.data.errors.AnnotationError`: 7)."""


class ModelError(DamoError):
    """A model card, a weight file or a backbone is missing, invalid or fails its checksum."""

    exit_code = 3


class ChecksumError(ModelError):
    pass


class EvaluationError(DamoError):
    """Ground truth or predictions cannot be evaluated (missing file, bad line, qids that do not match)."""

    exit_code = 5


class EvaluationFileError(EvaluationError, SchemaError):
    """A ground-truth or predictions line `damo eval` cannot read (exit 5, as every evaluation error)."""

    exit_code = 5


class StoreError(DamoError):
    """The library store cannot be used: held by another writer, damaged, or from a newer damo."""

    exit_code = 6

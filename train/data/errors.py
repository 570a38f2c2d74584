"""The exception tree of `edgeact.train.data`: every reader, writer and importer error is a DatasetError."""

from __future__ import annotations


class DatasetError(Exception):
    """Base class for everything that can go wrong with an episode dataset."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset id or path could not be resolved, or a file the metadata names is missing."""


class DatasetFormatError(DatasetError, ValueError):
    """A file exists but its content breaks the format in a way the reader cannot accept.

    The message names the file and, where they apply, the episode and the column.
    """


class VideoDecodeError(DatasetError):
    """A video file could not be opened or decoded, or a requested frame is not in it."""


class DatasetExistsError(DatasetError, FileExistsError):
    """A writer or importer was pointed at a folder that already holds a dataset (pass overwrite=True)."""

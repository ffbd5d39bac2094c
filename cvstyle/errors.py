"""Exceptions that the CLI turns into one-line messages and exit codes."""


class CvstyleError(Exception):
    """A user-facing failure: bad input, missing model, failed download."""

    exit_code = 1


class ImageError(CvstyleError):
    """An input image that cannot be read, or an output that cannot be written."""

    exit_code = 2


class ModelError(CvstyleError):
    """A model file that is missing, corrupt, or not a Torch7 network."""

    exit_code = 3


class DownloadError(CvstyleError):
    """A model that could not be fetched or did not verify."""

    exit_code = 4

"""User-facing errors: one class per kind of mistake a user can make.

The CLI catches :class:`GeocamatError`, prints its message on one line and exits with code 2.
Every message says what is wrong and how to fix it.
"""


class GeocamatError(Exception):
    """Base class of every error a user can cause."""


class InputNotFoundError(GeocamatError):
    """A path or glob given by the user matches no file."""


class InvalidRasterError(GeocamatError):
    """A raster cannot be used (unreadable, no CRS, incompatible grids, no valid pixels)."""


class InvalidLabelsError(GeocamatError):
    """Labels cannot be used (unknown field, no overlap with the imagery, no usable class)."""


class ConfigError(GeocamatError):
    """A configuration value is missing, unknown or out of range."""


class BundleError(GeocamatError):
    """A model bundle is missing, corrupt, or does not fit the input."""


class OutputExistsError(GeocamatError):
    """The output would overwrite existing results without --overwrite."""


class ResumeError(GeocamatError):
    """There is no interrupted run to resume, or it cannot be continued."""

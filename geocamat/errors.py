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


class OutputLocationError(GeocamatError):
    """The output location cannot take the results (read-only, no permission, disk full)."""


class ResourceError(GeocamatError):
    """The machine ran out of memory (host or GPU) for the requested sizes."""


class CorruptInputError(InvalidRasterError):
    """An input file is truncated or corrupt: GDAL fails to read its blocks."""


class GeocamatWarning(UserWarning):
    """Something that works but is probably not what the user wants; the CLI prints it on one line."""


class WeightsError(GeocamatError):
    """Pretrained weights cannot be found, fetched, read or fitted to the model."""


class ResumeError(GeocamatError):
    """There is no interrupted run to resume, or it cannot be continued."""


class TrainingDivergedError(GeocamatError):
    """The training loss became NaN or infinite (too high a learning rate, or non-finite input values)."""

"""A grey image among colour ones is read as 3 equal bands (as torchvision's ``ImageFolder`` does); any other
band count that differs from the one wanted is the user's to fix. The one rule scene folders, detection images
and ``info --check`` share."""

from __future__ import annotations


def grey_for_colour(count: int, wanted: int) -> bool:
    """Whether an image of ``count`` bands is a grey one read as the ``wanted`` 3 colour bands."""
    return count == 1 and wanted == 3


def fits(count: int, wanted: int) -> bool:
    """Whether an image of ``count`` bands can be read as ``wanted`` bands: the same count, or grey for colour."""
    return count == wanted or grey_for_colour(count, wanted)

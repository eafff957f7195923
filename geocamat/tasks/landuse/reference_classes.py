"""A reference raster's classes matched to a model's: by name where the reference names them, else by code.

A model trained on vector labels codes its classes in alphabetical order (agriculture 1, developed 2, ...), while
the reference raster of the same classes may code them otherwise (developed 1, agriculture 2, ...): scored code
against code, the accuracy would be that of a shuffled legend, without a word. When the reference names its
classes (a QGIS style, GDAL or ArcGIS attribute table beside it: :mod:`geocamat.data.class_styles`), its codes
are matched to the model's classes by name; a reference whose codes are none of the model's is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: the code a reference class that is none of the model's gets: its pixels are not scored
UNSCORED = -1


@dataclass
class ReferenceCodes:
    """How a reference raster's codes become the model's.

    Attributes:
        lookup: reference code -> model code (:data:`UNSCORED`: not scored); codes not in it are kept as they are.
        notes: what was matched, for the user.
    """

    lookup: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` (float codes, NaN unlabelled) in the model's codes; unscored classes become NaN."""
        if not self.lookup:
            return values
        out = values.copy()
        for code, model in self.lookup.items():
            out[values == code] = np.nan if model == UNSCORED else model
        return out


def reference_codes(reference: Path, class_ids: list[int], class_names: list[str]) -> ReferenceCodes:
    """The matching of ``reference``'s classes to the model's ``class_ids`` / ``class_names`` (see the module)."""
    from geocamat.data.class_styles import raster_classes

    named = raster_classes(reference)
    if not named.names:
        return ReferenceCodes(notes=_unnamed_notes(reference, class_ids, class_names))
    by_name = {name.strip().casefold(): cid for cid, name in zip(class_ids, class_names, strict=True)}
    matched = {code: by_name.get(name.strip().casefold()) for code, name in named.names.items()}
    source = " and ".join(named.sources)
    if not any(cid is not None for cid in matched.values()):
        return ReferenceCodes(notes=[f"warning: the class names of {reference.name} (from {source}: "
                                     f"{', '.join(list(named.names.values())[:5])}) are none of the model's; scored "
                                     "by code"])
    lookup = {code: UNSCORED if cid is None else cid for code, cid in matched.items()}
    notes = []
    moved = [f"{named.names[c]} {c} -> {cid}" for c, cid in sorted(lookup.items()) if cid not in (c, UNSCORED)]
    if moved:
        notes.append(f"note: the reference's classes are matched to the model's by name (from {source}): "
                     f"{', '.join(moved)}")
    unscored = [f"{named.names[c]} ({c})" for c, cid in sorted(lookup.items()) if cid == UNSCORED]
    if unscored:
        notes.append(f"note: reference classes that are none of the model's are not scored: {', '.join(unscored)}")
    return ReferenceCodes(lookup if moved or unscored else {}, notes)


def _unnamed_notes(reference: Path, class_ids: list[int], class_names: list[str]) -> list[str]:
    """A note when a reference without class names meets a model that looks coded from names (codes 1..N in the
    names' alphabetical order, as vector labels with names give): code against code may be a shuffled legend."""
    import re

    from_names = (class_ids == list(range(1, len(class_ids) + 1)) and class_names == sorted(class_names)
                  and not all(re.fullmatch(r"class_\d+", name) for name in class_names))
    if not from_names or len(class_ids) < 2:
        return []
    legend = ", ".join(f"{cid} {name}" for cid, name in list(zip(class_ids, class_names, strict=True))[:4])
    return [f"note: {reference.name} names no classes, so its codes are read as the model's ({legend}, ...), which "
            f"it numbered alphabetically from its labels' names; if {reference.name} codes them otherwise, name its "
            f"classes in {reference.with_suffix('.qml').name} beside it (QGIS: Symbology > Paletted/Unique values, "
            "Style > Save as default) to match them by name"]

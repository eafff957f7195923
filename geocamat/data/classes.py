"""Class names and colours: from the user, the label file, or sensible land-cover defaults."""

from __future__ import annotations

from geocamat.bundle import ClassInfo

# Colours for common land-cover names (matched by substring, case-insensitive), then a qualitative palette.
KEYWORD_COLOURS = [
    (("water", "river", "lake", "sea", "ocean"), "#2b83ba"),
    (("wetland", "marsh", "swamp"), "#5ab4ac"),
    (("forest", "tree", "wood"), "#1a7837"),
    (("shrub", "scrub"), "#8c6d31"),
    (("herbaceous", "grass", "meadow", "pasture"), "#a6d96a"),
    (("agri", "crop", "field", "farm", "cultivated"), "#f4d03f"),
    (("develop", "urban", "built", "industr", "resident", "city", "road", "parking"), "#d7191c"),
    (("sediment", "bare", "sand", "beach", "soil", "rock", "barren"), "#d9c89e"),
    (("snow", "ice", "cloud"), "#f0f0f0"),
]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94"]


def default_colour(name: str, index: int, used: set[str]) -> str:
    """A colour for a class: by land-cover keyword if the name has one, else from a qualitative palette."""
    lowered = name.lower()
    for words, colour in KEYWORD_COLOURS:
        if any(w in lowered for w in words) and colour not in used:
            return colour
    for offset in range(len(PALETTE)):
        colour = PALETTE[(index + offset) % len(PALETTE)]
        if colour not in used:
            return colour
    return PALETTE[index % len(PALETTE)]


def build_classes(ids: list[int], names: dict[int, str] | None = None,
                  colours: dict[int, str] | None = None) -> list[ClassInfo]:
    """ClassInfo for each label code, names defaulting to ``class_<id>``."""
    names, colours = names or {}, colours or {}
    used: set[str] = set(colours.values())
    out = []
    for i, cid in enumerate(sorted(ids)):
        name = names.get(cid, f"class_{cid}")
        colour = colours.get(cid) or default_colour(name, i, used)
        used.add(colour)
        out.append(ClassInfo(int(cid), str(name), colour))
    return out


def one_spelling(counts: dict[str, int]) -> tuple[dict[str, str], str | None]:
    """Class names as labellers type them, each mapped to one spelling: spaces around a name dropped, and names
    that differ only in case (``Forest``, ``forest``) taken as one class, spelled as most features spell it.

    Args:
        counts: features per name as found.

    Returns:
        (the spelling of each name found, a warning naming the names merged by case, or None).
    """
    totals: dict[str, dict[str, int]] = {}
    for raw, n in counts.items():
        name = str(raw).strip()
        spellings = totals.setdefault(name.casefold(), {})
        spellings[name] = spellings.get(name, 0) + n
    chosen = {key: max(sorted(s), key=lambda name: s[name]) for key, s in totals.items()}
    mapping = {raw: chosen[str(raw).strip().casefold()] for raw in counts}
    merged = [s for s in totals.values() if len(s) > 1]
    if not merged:
        return mapping, None
    parts = "; ".join(" = ".join(f"'{name}' ({n})" for name, n in sorted(s.items(), key=lambda kv: -kv[1]))
                      for s in merged)
    return mapping, (f"class names that differ only in case are one class, spelled as most features spell it: "
                     f"{parts}; rename the features if they are different classes")


def spellings(counts: dict[str, int], source: str, known=None) -> dict[str, str]:
    """:func:`one_spelling`'s mapping, warning (:class:`~geocamat.errors.GeocamatWarning`, naming ``source``) when
    names were merged; a name that is one of ``known`` (e.g. a model's classes) but for case takes its spelling."""
    import warnings

    from geocamat.errors import GeocamatWarning

    mapping, warning = one_spelling(counts)
    if warning:
        warnings.warn(f"{source}: {warning}", GeocamatWarning, stacklevel=3)
    if known is not None:
        folded = {str(name).casefold(): str(name) for name in known}
        mapping = {raw: folded.get(name.casefold(), name) for raw, name in mapping.items()}
    return mapping

"""What `geocamat train` says at the end of a land-use run: classes the map almost never shows are named."""

from geocamat.tasks.landuse import rare_class_warning, rarely_mapped, summary


def _metrics(recalls: dict[str, tuple[float, int]]) -> dict:
    per_class = {name: {"recall": r, "support": n, "precision": 0.5, "f1": 0.5} for name, (r, n) in recalls.items()}
    return {"validation_map": {"scope": "odd blocks", "overall_accuracy": 0.74, "kappa": 0.6, "macro_f1": 0.43,
                               "n": 1000, "per_class": per_class},
            "validation_tiles": {"accuracy": 0.72}, "training_tiles_per_class": {"forest": 900, "sediment": 5}}


def test_a_class_the_map_never_shows_is_named_with_the_fix():
    line = rare_class_warning(_metrics({"forest": (0.9, 900), "sediment": (0.0, 78), "absent": (0.0, 0)}))
    assert line.startswith("warning: ")  # a workflow line: it reaches stderr under train -q too
    assert "sediment (recall 0.00 of 78 px, 5 training tiles)" in line and "class_balance" in line
    assert "absent" not in line  # not labelled in the validation blocks: nothing to say


def test_no_warning_when_every_class_is_mapped():
    metrics = _metrics({"forest": (0.9, 900), "sediment": (0.2, 78)})
    assert rarely_mapped(metrics["validation_map"]) == [] and rare_class_warning(metrics) is None
    assert len(summary(metrics)) == 1

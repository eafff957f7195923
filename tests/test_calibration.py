"""Per-class logit offsets fitted on training pixels (geocamat.tasks.landuse.calibration)."""

import torch

from geocamat.tasks.landuse.calibration import (
    calibrate,
    fit_class_offsets,
    fold_offsets,
    keep_sample,
    macro_f1,
    pixel_logits,
)


def _biased_logits(n=20000, seed=0):
    """Three classes, the third rare (3%) and under-scored by 1.5 logits: argmax almost never picks it."""
    g = torch.Generator().manual_seed(seed)
    target = torch.multinomial(torch.tensor([0.6, 0.37, 0.03]), n, replacement=True, generator=g)
    logits = torch.randn(n, 3, generator=g) * 0.8
    logits[torch.arange(n), target] += 2.0
    logits[:, 2] -= 1.5
    return logits, target


def test_macro_f1_scores_only_labelled_classes():
    target = torch.tensor([0, 0, 1, 1])
    assert macro_f1(target.clone(), target, 3) == 1.0  # class 2 is never labelled: not scored
    assert abs(macro_f1(torch.tensor([0, 0, 0, 1]), target, 3) - (0.8 + 2 / 3) / 2) < 1e-9


def test_offsets_bring_a_rare_class_back_within_the_accuracy_budget():
    logits, target = _biased_logits()
    offsets, summary = fit_class_offsets(logits, target, max_oa_loss=0.01)
    assert offsets[2] >= 0.5 and offsets[2] == offsets.max()  # the under-scored class is pushed up
    assert summary["macro_f1_after"] > summary["macro_f1_before"] + 0.03
    assert summary["accuracy_after"] >= summary["accuracy_before"] - 0.01 - 1e-9
    pred = (logits + offsets).argmax(dim=1)
    assert abs(macro_f1(pred, target, 3) - summary["macro_f1_after"]) < 1e-3
    held_out, held_target = _biased_logits(seed=1)  # the gain is not an artefact of the fitted pixels
    before = macro_f1(held_out.argmax(dim=1), held_target, 3)
    after = macro_f1((held_out + offsets).argmax(dim=1), held_target, 3)
    assert after > before + 0.03


def test_a_zero_budget_never_costs_accuracy():
    logits, target = _biased_logits()
    _, summary = fit_class_offsets(logits, target, max_oa_loss=0.0)
    assert summary["accuracy_after"] >= summary["accuracy_before"]


def _tiny_camnet(output="dense"):
    from geocamat.models import build_model

    torch.manual_seed(0)
    return build_model({"name": "camnet", "in_channels": 3, "num_classes": 3, "tile_size": 16,
                        "arch": "camnet-xs", "output": output}).eval()


def test_folded_offsets_shift_every_pixel_logit_and_keep_the_cam():
    from geocamat.models.camnet import tile_probabilities

    model = _tiny_camnet()
    x = torch.randn(4, 3, 16, 16)
    masks = torch.randint(-1, 3, (4, 16, 16))
    before, target = pixel_logits(model, x, masks)
    _, cam_before = tile_probabilities(model, x)
    offsets = torch.tensor([0.5, -1.0, 2.0])
    fold_offsets(model, offsets)
    after, _ = pixel_logits(model, x, masks)
    assert len(before) == int((masks >= 0).sum()) and target.tolist() == masks[masks >= 0].tolist()
    assert torch.allclose(after - before, offsets.expand_as(before), atol=1e-5)
    _, cam_after = tile_probabilities(model, x)
    assert cam_after.shape == cam_before.shape


def test_window_models_give_the_tile_logits_to_every_pixel():
    model = _tiny_camnet("window")
    x = torch.randn(2, 3, 16, 16)
    masks = torch.zeros(2, 16, 16, dtype=torch.long)
    logits, _ = pixel_logits(model, x, masks)
    tile = model(x)
    assert torch.allclose(logits.view(2, 256, 3), tile[:, None, :].expand(2, 256, 3), atol=1e-5)


def test_the_kept_sample_is_bounded_and_needs_pixel_labels(monkeypatch):
    import geocamat.tasks.landuse.calibration as cal

    x, m = torch.randn(100, 3, 16, 16), torch.randint(0, 3, (100, 16, 16))
    monkeypatch.setattr(cal, "SAMPLE_MB", 3 * 16 * 16 * 4 * 10 / 1e6)  # room for 10 tiles
    images, masks = keep_sample(x, m)
    assert images.shape == (10, 3, 16, 16) and masks.shape == (10, 16, 16)
    assert keep_sample(x, None) is None and keep_sample(x, torch.full_like(m, -1)) is None


def test_calibrate_records_the_offsets_by_class_name():
    model = _tiny_camnet()
    x, m = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8, 16, 16))
    lines = []
    summary = calibrate(model, (x, m), ["a", "b", "c"], log=lines.append)
    assert set(summary["offsets"]) == {"a", "b", "c"} and len(lines) == 1 and "macro-F1" in lines[0]

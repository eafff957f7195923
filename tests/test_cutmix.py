"""CutMix of land-use tiles: pixels and their labels move together; tile labels weighted by the footprint."""

import torch

from geocamat.tasks.landuse.cutmix import cutmix


def _batch(n: int = 6, size: int = 16):
    # every pixel of tile i holds the value i in every band, and the label i
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    masks = torch.arange(n).view(n, 1, 1).expand(n, size, size).clone()
    return images, masks, torch.arange(n)


def test_pasted_pixels_carry_their_labels_and_the_footprint_share_is_exact():
    images, masks, labels = _batch()
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        mixed, mixed_masks, pasted, share = cutmix(images, masks, labels, footprint=0.25, generator=g)
        assert torch.equal(mixed[:, 0].long(), mixed_masks)  # every pixel's label is the one of its source tile
        moved = mixed_masks != labels.view(-1, 1, 1)
        box = moved.any(dim=0)  # one box for the whole batch (tiles paired with themselves move nothing)
        for i in range(len(labels)):
            src = mixed_masks[i][box]
            assert torch.equal(src, torch.full_like(src, int(pasted[i])))
        centre = box[6:10, 6:10]  # the central 4 x 4 footprint of a 16 px tile
        if (pasted != labels).any():
            assert abs(share - (1 - centre.float().mean().item())) < 1e-6
        assert 0.0 <= share <= 1.0
    assert torch.equal(images, _batch()[0])  # inputs untouched


def test_without_masks_and_seeded():
    images, _, labels = _batch()
    a = cutmix(images, None, labels, generator=torch.Generator().manual_seed(3))
    b = cutmix(images, None, labels, generator=torch.Generator().manual_seed(3))
    assert a[1] is None and torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) and a[3] == b[3]

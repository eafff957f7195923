import pytest
import torch

from geocamat.camat.geometry import dihedral, dihedral_inverse, random_dihedral


def _img(n=1):
    return torch.arange(n * 2 * 5 * 5, dtype=torch.float32).view(n, 2, 5, 5)


def test_convention_flip_then_rotate():
    x = _img()
    for k in range(8):
        expected = torch.flip(x, dims=(-1,)) if k >= 4 else x
        expected = torch.rot90(expected, k % 4, dims=(-2, -1))
        assert torch.equal(dihedral(x, k), expected)
    assert torch.equal(dihedral(x, 4), torch.flip(x, dims=(-1,)))
    assert torch.equal(dihedral(x, 1), torch.rot90(x, 1, dims=(-2, -1)))


def test_eight_distinct_and_inverse():
    x = torch.rand(1, 1, 6, 6)
    outs = [dihedral(x, k) for k in range(8)]
    for i in range(8):
        assert torch.equal(dihedral_inverse(outs[i], i), x)
        for j in range(i):
            assert not torch.equal(outs[i], outs[j])


def test_per_sample_indices():
    x = torch.rand(8, 3, 7, 7)
    k = torch.tensor([3, 0, 5, 7, 1, 2, 6, 4])
    y = dihedral(x, k)
    for i in range(8):
        assert torch.equal(y[i], dihedral(x[i], int(k[i])))
    assert torch.equal(dihedral_inverse(y, k), x)
    # (N, H, W) maps work the same way
    m = torch.rand(8, 7, 7)
    assert torch.equal(dihedral_inverse(dihedral(m, k), k), m)


def test_per_sample_gather_matches_the_flips_and_turns_for_every_dtype_and_layout():
    """Per-sample indices go through one gather (no host sync on a GPU); it must equal rot90/flip per sample."""
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 8, (16,), generator=g)
    for x in (torch.rand(16, 3, 9, 9, generator=g), torch.randint(-1, 5, (16, 9, 9), generator=g),
              torch.rand(16, 2, 3, 4, 4, generator=g),
              torch.rand(16, 3, 12, 12, generator=g).contiguous(memory_format=torch.channels_last)):
        for fn in (dihedral, dihedral_inverse):
            y = fn(x, k)
            assert y.dtype == x.dtype and y.shape == x.shape
            for i in range(16):
                assert torch.equal(y[i], fn(x[i], int(k[i])))
    # non-square images: per-sample half turns and flips still work (quarter turns are refused above)
    x = torch.rand(4, 1, 3, 5, generator=g)
    k = torch.tensor([0, 2, 4, 6])
    y = dihedral(x, k)
    for i in range(4):
        assert torch.equal(y[i], dihedral(x[i], int(k[i])))


def test_errors():
    with pytest.raises(ValueError):
        dihedral(torch.rand(2, 4, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError):
        dihedral(torch.rand(2, 4, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        dihedral(torch.rand(4, 4), 8)
    with pytest.raises(ValueError, match="0..7"):
        dihedral(torch.rand(2, 4, 4), torch.tensor([0, 8]))
    k = random_dihedral(1000, torch.Generator().manual_seed(0))
    assert k.min() == 0 and k.max() == 7


def test_boxes_follow_the_pixels_under_every_dihedral_transform():
    from geocamat.camat.geometry import dihedral_boxes

    image = torch.zeros(1, 16, 16)
    image[0, 2:5, 9:15] = 1.0  # rows 2-4, columns 9-14
    boxes = torch.tensor([[9.0, 2.0, 15.0, 5.0]])
    for k in range(8):
        moved = dihedral(image, k)[0]
        rows, cols = torch.nonzero(moved, as_tuple=True)
        expected = torch.tensor([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], dtype=torch.float32)
        assert torch.equal(dihedral_boxes(boxes, k, 16), expected), k

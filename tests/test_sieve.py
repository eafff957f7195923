"""The minimum mapping unit: small regions merged into their neighbour, except where they may continue in the
next piece of the map."""

import numpy as np

from geocamat.outputs.sieve import sieve_classes


def test_small_regions_merge_into_their_largest_neighbour_and_nodata_stays():
    a = np.ones((8, 8), np.uint8)
    a[:, 5:] = 2
    a[3, 2] = 3  # 1 px island inside class 1
    a[6:8, 6:8] = 4  # 4 px block in class 2 (kept at min 4)
    a[0, 0] = 0  # nodata
    out = sieve_classes(a, 0, 4)
    assert out[3, 2] == 1 and (out[6:8, 6:8] == 4).all() and out[0, 0] == 0
    assert sieve_classes(a, 0, 5)[6, 6] == 2  # a 4 px region is under a 5 px unit
    assert np.array_equal(sieve_classes(a, 0, 0), a)


def test_regions_touching_an_inner_edge_are_kept():
    a = np.ones((6, 6), np.uint8)
    a[5, 2] = 3  # touches the bottom side
    a[2, 2] = 3  # inside
    out = sieve_classes(a, 0, 4, inner_edges=(False, False, True, False))
    assert out[5, 2] == 3 and out[2, 2] == 1
    assert sieve_classes(a, 0, 4)[5, 2] == 1  # the bottom is the map's border: sieved


def test_a_piece_smaller_than_the_unit_is_sieved_without_gdal_refusing_it():
    classes = np.array([[1, 2], [1, 1]], np.uint8)
    out = sieve_classes(classes, nodata=0, min_pixels=10)  # the whole map is 4 px, the unit 10
    assert out.shape == classes.shape and (out == 1).all()
    assert (sieve_classes(np.array([[3]], np.uint8), nodata=0, min_pixels=10) == 3).all()

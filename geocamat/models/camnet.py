"""ResNet-style classifiers whose last feature map stays CAM-able at the tile size.

Torchvision's ResNets reduce a 32 px tile to 1x1, where a class activation map means nothing. Here the
total stride is chosen from the tile size so that the last feature map is at least 7x7 (excess
downsampling is removed from the stem and the last stages, as in dilated/"output stride" ResNets).
"""

from __future__ import annotations

from torch import Tensor, nn

from geocamat.errors import ConfigError

ARCHS: dict[str, dict] = {
    # name: block widths and blocks per stage
    "resnet18": {"widths": (64, 128, 256, 512), "depths": (2, 2, 2, 2)},
    "resnet10": {"widths": (64, 128, 256, 512), "depths": (1, 1, 1, 1)},
    "camnet-s": {"widths": (32, 64, 128, 256), "depths": (1, 1, 1, 1)},
    "camnet-xs": {"widths": (16, 32, 64, 128), "depths": (1, 1, 1, 1)},
}


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions and a shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def plan_strides(tile_size: int, min_cells: int = 7, max_stride: int = 32) -> tuple[int, list[int]]:
    """Stem stride and per-stage strides so that ``tile_size / total stride >= min_cells``.

    Returns:
        (stem stride in {1, 2, 4}, strides of stages 2-4 each in {1, 2}); stage 1 has stride 1.
    """
    total = 1
    while total * 2 <= max_stride and tile_size // (total * 2) >= min_cells:
        total *= 2
    stem = min(total, 4)
    rest = total // stem
    stages = []
    for _ in range(3):
        s = 2 if rest > 1 else 1
        stages.append(s)
        rest //= s
    return stem, stages


class CamNet(nn.Module):
    """Classifier: convolutional features -> global average pooling -> linear head.

    Args:
        in_channels: number of image bands.
        num_classes: number of classes.
        tile_size: tile side in pixels; sets the strides (see :func:`plan_strides`).
        arch: one of :data:`ARCHS`.
        output: how :func:`tile_probabilities` turns a tile into per-pixel probabilities: ``window`` (the
            tile's class probabilities for every pixel; blending across overlapping windows gives the map)
            or ``dense`` (the per-location class activation logits, upsampled: a CAM-based segmentation).
        stem_kernel: kernel of the first convolution (3; 7 where the model starts from torchvision/TorchGeo
            ResNet weights, whose stem it then matches).
    """

    def __init__(self, in_channels: int, num_classes: int, tile_size: int, arch: str = "resnet18",
                 output: str = "window", stem_kernel: int = 3) -> None:
        super().__init__()
        if output not in ("window", "dense"):
            raise ConfigError(f"unknown output {output!r}: choose window or dense")
        self.output = output
        if arch not in ARCHS:
            raise ConfigError(f"unknown --arch {arch!r}: choose one of {', '.join(ARCHS)}")
        spec = ARCHS[arch]
        widths, depths = spec["widths"], spec["depths"]
        stem_stride, stage_strides = plan_strides(tile_size)
        self.output_stride = stem_stride
        for s in stage_strides:
            self.output_stride *= s
        stem: list[nn.Module] = [
            nn.Conv2d(in_channels, widths[0], stem_kernel, 2 if stem_stride >= 2 else 1, stem_kernel // 2, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        if stem_stride == 4:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        stages = []
        cin = widths[0]
        for i, (cout, depth) in enumerate(zip(widths, depths, strict=True)):
            stride = 1 if i == 0 else stage_strides[i - 1]
            blocks = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout, 1) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        """Last feature map, (N, C, h, w)."""
        return self.stages(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, (N, K)."""
        return self.head(self.forward_features(x).mean(dim=(2, 3)))

    def dense_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-location class logits (the head applied at every feature cell) and the tile logits.

        Because pooling and the head are both linear, the tile logits are the mean of the dense ones:
        the dense logits of a class are its class activation map plus the bias.

        Returns:
            (dense (N, K, h, w), tile logits (N, K)).
        """
        dense = self.cam_logits(self.forward_features(x))
        return dense, dense.mean(dim=(2, 3))

    def cam_logits(self, features: Tensor) -> Tensor:
        """The head applied at every cell of a last feature map: (N, C, h, w) -> (N, K, h, w)."""
        return nn.functional.conv2d(features, self.head.weight[:, :, None, None], self.head.bias)


def tile_probabilities(model: CamNet, x: Tensor, tta: bool = False) -> tuple[Tensor, Tensor]:
    """Per-pixel class probabilities and CAM of a batch of tiles, at the tile size.

    With ``tta``, both are averaged over the eight flips/quarter turns of each tile (test-time augmentation,
    8x the model cost), each result turned back to the tile's frame first.

    With ``model.output == "window"`` every pixel gets the tile's class probabilities; with ``"dense"`` the
    dense logits (see :meth:`CamNet.dense_logits`) are upsampled bilinearly to the tile and passed through
    a softmax. The CAM is that of the tile's predicted class, upsampled and scaled to [0, 1] per tile.

    Args:
        model: a :class:`CamNet` in eval mode.
        x: (N, C, H, W) normalised tiles.
        tta: average over the dihedral transforms.

    Returns:
        (probabilities (N, K, H, W) float32, cam (N, H, W) float32).
    """
    if tta:
        from geocamat.camat.geometry import NUM_DIHEDRAL, dihedral, dihedral_inverse

        probs, cam = tile_probabilities(model, x)
        for k in range(1, NUM_DIHEDRAL):
            p, c = tile_probabilities(model, dihedral(x, k))
            probs += dihedral_inverse(p, k)
            cam += dihedral_inverse(c, k)
        return probs / NUM_DIHEDRAL, cam / NUM_DIHEDRAL
    dense, logits = model.dense_logits(x)
    size = tuple(x.shape[-2:])
    up = nn.functional.interpolate(dense.float(), size=size, mode="bilinear", align_corners=False)
    if getattr(model, "output", "dense") == "window":
        probs = logits.float().softmax(dim=1)[:, :, None, None].expand(-1, -1, *size).contiguous()
    else:
        probs = up.softmax(dim=1)
    pred = logits.argmax(dim=1)
    cam = (up - model.head.bias.float().view(1, -1, 1, 1)).gather(
        1, pred.view(-1, 1, 1, 1).expand(-1, 1, *size))[:, 0]
    cam = cam.clamp_min(0)
    cam = cam / cam.flatten(1).amax(dim=1).clamp_min(1e-8).view(-1, 1, 1)
    return probs, cam

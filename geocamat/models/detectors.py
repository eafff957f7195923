"""Object detectors with a CAM-able backbone (from scratch, or started from weights: models/weights.py).

A small ResNet body (stride 4, 8, 16) feeds a feature pyramid and one of torchvision's detectors
(Faster R-CNN, RetinaNet, FCOS). An auxiliary image-level multi-label head (global average pooling +
linear, BCE on which classes occur in the tile) sits on the body's last feature map; it is trained jointly
and gives class activation maps for CAMAT and the ``cam_evidence`` of detections.

Class indices are 0..K-1 everywhere outside this module (Faster R-CNN's background class is hidden).
Inputs are already normalised tiles (N, C, H, W); torchvision's transform is set to identity
normalisation and to no resizing for tiles of ``tile_size``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder, BoxLinearCoder

from geocamat.models.camnet import BasicBlock

DETECTORS = ("fasterrcnn", "retinanet", "fcos")
BACKBONES: dict[str, dict] = {
    "tiny": {"widths": (16, 32, 64, 128), "depths": (1, 1, 1)},
    "small": {"widths": (32, 64, 128, 256), "depths": (1, 1, 1)},
    "resnet10": {"widths": (64, 64, 128, 256), "depths": (1, 1, 1)},
    "resnet18": {"widths": (64, 64, 128, 256), "depths": (2, 2, 2)},
}


class Body(nn.Module):
    """ResNet-style body: stem to stride 4, then stages at stride 4, 8 and 16 (children run in order).

    The stem is two 3x3 convolutions of stride 2, or (``stem_kernel`` set, e.g. 7 for torchvision/TorchGeo
    ResNet weights) one ``stem_kernel`` convolution of stride 2 and a 3x3 max-pool of stride 2, as in ResNet.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], depths: tuple[int, ...],
                 stem_kernel: int | None = None) -> None:
        super().__init__()
        w0 = widths[0]
        if stem_kernel is None:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, w0, 3, 2, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True),
                nn.Conv2d(w0, w0, 3, 2, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, w0, stem_kernel, 2, stem_kernel // 2, bias=False), nn.BatchNorm2d(w0),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
            )
        cin = w0
        for i, (cout, depth) in enumerate(zip(widths[1:], depths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout, 1) for _ in range(depth - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        for m in self.children():
            x = m(x)
        return x


class Detector(nn.Module):
    """A torchvision detector over a small from-scratch body, plus an auxiliary CAM head.

    Args:
        arch: ``fasterrcnn``, ``retinanet`` or ``fcos``.
        in_channels: image bands.
        num_classes: object classes (no background).
        tile_size: tile side; tiles of this size are not resized.
        backbone: one of :data:`BACKBONES`.
        fpn_channels: channels of the feature pyramid.
        anchor_sizes: one anchor size (px) per pyramid level (4 levels: stride 4, 8, 16, 32).
        score_threshold: minimum score of returned detections (low; the user's threshold applies later).
        nms_iou: per-tile NMS IoU.
        detections_per_img: maximum detections per tile.
        cam_dense: also train the CAM head densely (the same linear weights applied at every feature cell,
            BCE against which classes have a box over the cell). With presence labels alone the head
            learns nothing where every tile holds the class (one-class data such as trees), and its CAM
            is then noise; the dense term makes the CAM peak on the objects.
        stem_kernel: see :class:`Body` (None: two 3x3 convolutions).
    """

    def __init__(
        self,
        arch: str = "fasterrcnn",
        in_channels: int = 3,
        num_classes: int = 1,
        tile_size: int = 400,
        backbone: str = "small",
        fpn_channels: int = 64,
        anchor_sizes: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        score_threshold: float = 0.05,
        nms_iou: float = 0.5,
        detections_per_img: int = 300,
        cam_dense: bool = True,
        stem_kernel: int | None = None,
    ) -> None:
        super().__init__()
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.backbone_utils import BackboneWithFPN

        if arch not in DETECTORS:
            raise ValueError(f"unknown detector {arch!r}: choose one of {', '.join(DETECTORS)}")
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}: choose one of {', '.join(BACKBONES)}")
        spec = BACKBONES[backbone]
        self.arch, self.num_classes, self.tile_size = arch, num_classes, tile_size
        body = Body(in_channels, spec["widths"], spec["depths"], stem_kernel)
        fpn = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2"}, list(spec["widths"][1:]),
                              fpn_channels)
        common = {"min_size": tile_size, "max_size": tile_size, "image_mean": [0.0] * in_channels,
                  "image_std": [1.0] * in_channels, "size_divisible": 16}
        sizes = tuple((int(s),) for s in anchor_sizes)
        if arch == "fasterrcnn":
            from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
            from torchvision.ops import MultiScaleRoIAlign

            anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
            pool = MultiScaleRoIAlign(["0", "1", "2"], 7, 2)
            self.detector = FasterRCNN(
                fpn, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=pool,
                box_head=TwoMLPHead(fpn_channels * 49, 256), box_predictor=FastRCNNPredictor(256, num_classes + 1),
                rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=1000,
                rpn_post_nms_top_n_test=500, box_batch_size_per_image=256, box_score_thresh=score_threshold,
                box_nms_thresh=nms_iou, box_detections_per_img=detections_per_img, **common)
        elif arch == "retinanet":
            from torchvision.models.detection.retinanet import RetinaNet

            anchors = AnchorGenerator(tuple((s, int(s * 1.26), int(s * 1.59)) for (s,) in sizes),
                                      ((0.5, 1.0, 2.0),) * len(sizes))
            self.detector = RetinaNet(fpn, num_classes, anchor_generator=anchors, score_thresh=score_threshold,
                                      nms_thresh=nms_iou, detections_per_img=detections_per_img, **common)
        else:
            from torchvision.models.detection.fcos import FCOS

            anchors = AnchorGenerator(tuple((s // 2,) for (s,) in sizes), ((1.0,),) * len(sizes))
            self.detector = FCOS(fpn, num_classes, anchor_generator=anchors, score_thresh=score_threshold,
                                 nms_thresh=nms_iou, detections_per_img=detections_per_img, **common)
        self.cam_head = nn.Linear(spec["widths"][-1], num_classes)
        self.cam_dense = cam_dense
        self._features: Tensor | None = None
        self.detector.backbone.body.register_forward_hook(self._keep_features)
        self.detector.backbone.register_forward_hook(_float32_features)
        _float32_box_coders(self.detector)

    def _keep_features(self, module: nn.Module, inputs, output: OrderedDict) -> None:
        self._features = output["2"]

    @property
    def body(self) -> nn.Module:
        """The CAM-able body (an ``IntermediateLayerGetter`` returning stride 4, 8, 16 maps)."""
        return self.detector.backbone.body

    def _to_tv(self, targets: list[dict]) -> list[dict]:
        if self.arch != "fasterrcnn":
            return targets
        return [{**t, "labels": t["labels"] + 1} for t in targets]

    def _from_tv(self, dets: list[dict]) -> list[dict]:
        if self.arch != "fasterrcnn":
            return dets
        return [{**d, "labels": d["labels"] - 1} for d in dets]

    def forward(self, images: Tensor | list[Tensor], targets: list[dict] | None = None):
        """Training: dict of losses (detector losses + ``loss_cam`` of the auxiliary head). Eval: detections.

        Args:
            images: (N, C, H, W) normalised tiles, or a list of (C, H, W).
            targets: per tile ``{"boxes": (M, 4) xyxy pixels, "labels": (M,) 0..K-1}`` (training only).

        Returns:
            Training: losses. Eval: per tile ``{"boxes", "scores", "labels"}`` in tile pixel coordinates.
        """
        images = list(images)
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            losses = self.detector(images, self._to_tv(targets))
            logits = self.cam_head(self._features.mean(dim=(2, 3)))
            present = torch.zeros_like(logits)
            for i, t in enumerate(targets):
                if len(t["labels"]):
                    present[i, t["labels"]] = 1.0
            losses["loss_cam"] = F.binary_cross_entropy_with_logits(logits, present)
            if self.cam_dense:
                losses["loss_cam"] = losses["loss_cam"] + self._dense_cam_loss(images, targets)
            return losses
        return self._from_tv(self.detector(images))

    def _dense_cam_loss(self, images: list[Tensor], targets: list[dict]) -> Tensor:
        """BCE of the per-cell class logits (CAM + bias) against box occupancy at the feature grid."""
        feats = self._features
        n, _, h, w = feats.shape
        dense = F.conv2d(feats, self.cam_head.weight[:, :, None, None], self.cam_head.bias)
        occ = torch.zeros_like(dense)
        sy = images[0].shape[-2] / h
        sx = images[0].shape[-1] / w
        cy = (torch.arange(h, device=feats.device, dtype=torch.float32) + 0.5) * sy
        cx = (torch.arange(w, device=feats.device, dtype=torch.float32) + 0.5) * sx
        for i, t in enumerate(targets):
            b, lab = t["boxes"].to(feats.device).float(), t["labels"].to(feats.device)
            if len(b) == 0:
                continue
            iny = (cy.view(1, h, 1) >= b[:, 1].view(-1, 1, 1)) & (cy.view(1, h, 1) < b[:, 3].view(-1, 1, 1))
            inx = (cx.view(1, 1, w) >= b[:, 0].view(-1, 1, 1)) & (cx.view(1, 1, w) < b[:, 2].view(-1, 1, 1))
            cover = iny & inx  # (M, h, w)
            # a box smaller than a cell still marks the cell holding its centre
            row = ((b[:, 1] + b[:, 3]) / 2 / sy).long().clamp(0, h - 1)
            col = ((b[:, 0] + b[:, 2]) / 2 / sx).long().clamp(0, w - 1)
            cover[torch.arange(len(b), device=feats.device), row, col] = True
            for k in lab.unique():
                occ[i, k] = cover[lab == k].any(dim=0).float()
        return F.binary_cross_entropy_with_logits(dense, occ)

    def class_activation_maps(self, images: Tensor) -> Tensor:
        """CAMs of every class at the image size, from one pass of the body (no gradient).

        Args:
            images: (N, C, H, W) normalised tiles.

        Returns:
            (N, K, H, W) float32 maps (raw, not normalised; positive = evidence for the class).
        """
        with torch.no_grad():
            feats = self.body(images)["2"]
            cams = torch.einsum("kc,nchw->nkhw", self.cam_head.weight.to(feats.dtype), feats)
        return F.interpolate(cams.float(), size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)

    def predict(self, images: Tensor, with_cam: bool = True) -> tuple[list[dict], Tensor | None]:
        """Detections and (optionally) all-class CAMs of a batch of tiles, in eval mode, without gradients.

        Returns:
            (detections per tile, (N, K, H, W) CAMs or None).
        """
        with torch.no_grad():
            dets = self.forward(images)
            cams = None
            if with_cam:
                feats = self._features  # body output of the detector's own pass (no resize at tile_size)
                if feats is not None and feats.shape[0] == images.shape[0]:
                    cams = torch.einsum("kc,nchw->nkhw", self.cam_head.weight.to(feats.dtype), feats).float()
                    stride = 16
                    cams = F.interpolate(cams, scale_factor=stride, mode="bilinear", align_corners=False)
                    h, w = images.shape[-2:]
                    if cams.shape[-2] >= h and cams.shape[-1] >= w and tuple(images.shape[-2:]) == (
                            self.tile_size, self.tile_size):
                        cams = cams[..., :h, :w]
                    else:
                        cams = self.class_activation_maps(images)
                else:
                    cams = self.class_activation_maps(images)
        return dets, cams


def _float32_features(module: nn.Module, inputs, output: OrderedDict) -> OrderedDict:
    """Forward hook on the feature pyramid: float32 maps, so that the anchors made from their dtype are exact."""
    return OrderedDict((k, v.float()) for k, v in output.items())


def _float32_box_coders(detector: nn.Module) -> None:
    """Make every box coder of a torchvision detector decode in float32.

    Under bf16 autocast torchvision casts anchors and proposals to the dtype of the predicted deltas before
    decoding: 8 significant bits put box corners on a 2 px grid between 256 and 512 px (a 30 px crown loses
    ~0.1 IoU). The deltas themselves are relative and keep their precision; only the decode moves to float32.
    """
    swap = {BoxCoder: Float32BoxCoder, BoxLinearCoder: Float32BoxLinearCoder}
    for module in detector.modules():
        coder = getattr(module, "box_coder", None)
        if type(coder) in swap:
            coder.__class__ = swap[type(coder)]


class Float32BoxCoder(BoxCoder):
    """torchvision's BoxCoder, decoding in float32 whatever the deltas' dtype."""

    def decode(self, rel_codes: Tensor, boxes: list[Tensor]) -> Tensor:
        return super().decode(rel_codes.float(), [b.float() for b in boxes])

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:  # RetinaNet calls it directly
        return super().decode_single(rel_codes.float(), boxes.float())


class Float32BoxLinearCoder(BoxLinearCoder):
    """torchvision's BoxLinearCoder (FCOS), decoding in float32 whatever the deltas' dtype."""

    def decode(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        return super().decode(rel_codes.float(), boxes.float())


def build_detector(**kwargs) -> nn.Module:
    """Build a :class:`Detector` from the kwargs stored in a bundle's model spec (``{"name": "detector", ...}``)."""
    return Detector(**kwargs)

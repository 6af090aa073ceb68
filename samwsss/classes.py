"""Class lists of the supported datasets and the VOC colour palette.

Index 0 is always ``background``; object classes are contiguous ``1..C``. COCO category
ids (1..90 with gaps) map to contiguous indices here and nowhere else.
"""

from __future__ import annotations

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 21 PASCAL VOC 2012 classes, background first."""

COCO_CATEGORY_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)  # fmt: skip
"""The 80 COCO category ids in order; contiguous index = position + 1."""

COCO_CLASSES: tuple[str, ...] = (
    "background",
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip
"""The 81 COCO classes (80 categories in category-id order), background first."""

COCO_CATEGORY_TO_INDEX: dict[int, int] = {cid: i + 1 for i, cid in enumerate(COCO_CATEGORY_IDS)}
"""COCO category id -> contiguous class index (1..80)."""

COCO_INDEX_TO_CATEGORY: dict[int, int] = {i: cid for cid, i in COCO_CATEGORY_TO_INDEX.items()}
"""Contiguous class index (1..80) -> COCO category id."""

IGNORE_INDEX = 255
"""Label value for pixels to ignore (VOC object boundaries, uncertain pseudo-label pixels)."""


def voc_palette() -> list[int]:
    """The standard PASCAL VOC colour palette as a flat list of 768 ints (256 RGB triples).

    Colour ``i`` is built from the bits of ``i`` (the VOC devkit's ``labelcolormap``);
    index 255 is white so ignore pixels show as the usual white outline.
    """
    palette: list[int] = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((red, green, blue))
    palette[255 * 3 : 256 * 3] = [255, 255, 255]
    return palette

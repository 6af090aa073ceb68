"""Published figures that ``samwsss reproduce`` sets its own numbers beside.

Every value is mIoU in percent, copied from its source:

* the survey ("Weakly-Supervised Semantic Segmentation with Image-Level Labels: from
  Traditional Models to Foundation Models"), Table 1, rows 54 (SAM text input), 55 (SAM
  zero-shot) and 56 (fully supervised): pseudo masks (P.M.) on ``train`` and the
  DeepLabV2 segmenter on ``val`` (VOC 2012 and COCO 2014). Row 55's ``val`` figures are
  the zero-shot masks evaluated on ``val`` directly (no segmenter), row 56's P.M. is the
  ground truth itself (100);
* FMA-WSSS (WACV 2024): Mask2Former Swin-L trained on SAM-based pseudo masks of 73.9 mIoU,
  evaluated on ``val``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The survey's citation as the table prints it.
SURVEY = "survey Table 1"
#: FMA-WSSS's citation as the table prints it.
FMA_WSSS = "FMA-WSSS (WACV 2024)"


@dataclass(frozen=True)
class Published:
    """One published figure.

    Attributes:
        row: the table row it belongs to (:data:`ROWS` keys: ``"text-input"``,
            ``"zero-shot"``, ``"fully-supervised"``).
        dataset: ``"voc"`` or ``"coco"``.
        column: ``"pm"`` (pseudo masks on ``train``) or ``"val"``.
        miou: mIoU in percent, as printed.
        source: where it is printed (``"survey Table 1, row 54"``).
        segmenter: the segmenter behind a ``val`` figure (``None`` for masks).
    """

    row: str
    dataset: str
    column: str
    miou: float
    source: str
    segmenter: str | None = None


def _survey(
    row: str, number: int, voc: tuple[float, float], coco: tuple[float, float]
) -> list[Published]:
    source = f"{SURVEY}, row {number}"
    segmenter = None if row == "zero-shot" else "deeplabv2"
    return [
        Published(row, dataset, column, value, source, segmenter if column == "val" else None)
        for dataset, values in (("voc", voc), ("coco", coco))
        for column, value in zip(("pm", "val"), values, strict=True)
    ]


#: Every published figure (the survey's ``test`` column is left out: ``reproduce`` does not
#: submit to the VOC evaluation server).
PUBLISHED: tuple[Published, ...] = (
    *_survey("text-input", 54, voc=(86.4, 72.7), coco=(64.4, 50.8)),
    *_survey("zero-shot", 55, voc=(78.2, 74.0), coco=(54.6, 54.6)),
    *_survey("fully-supervised", 56, voc=(100.0, 75.3), coco=(100.0, 53.5)),
    Published(
        "text-input",
        "voc",
        "val",
        82.6,
        f"{FMA_WSSS}, Mask2Former Swin-L",
        "mask2former-swin-large",
    ),
    Published(
        "text-input",
        "coco",
        "val",
        55.4,
        f"{FMA_WSSS}, Mask2Former Swin-L",
        "mask2former-swin-large",
    ),
)

#: Row key -> the name the table prints.
ROWS: dict[str, str] = {
    "text-input": "SAM (text input)",
    "zero-shot": "SAM (zero-shot)",
    "fully-supervised": "Fully supervised (upper bound)",
}


def published(dataset: str, row: str, column: str, segmenter: str | None = None) -> list[Published]:
    """The published figures of one table cell: ``dataset`` (``voc``/``coco``), ``row``
    (:data:`ROWS`), ``column`` (``pm``/``val``); for a ``val`` cell of a trained segmenter,
    those of ``segmenter`` first, then the others (a DeepLabV2 run is set beside the
    survey's DeepLabV2, a Mask2Former run beside FMA-WSSS's and the survey's)."""
    found = [p for p in PUBLISHED if (p.dataset, p.row, p.column) == (dataset, row, column)]
    return sorted(found, key=lambda p: p.segmenter != segmenter)

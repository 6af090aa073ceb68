"""ConfusionMatrix and SegmentationMetrics against hand-computed confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from samwsss.evaluation import ConfusionMatrix, SegmentationMetrics

# Three classes. Pixel pairs (gt, pred), row by row:
#   (0,0) (0,1) (1,1) (1,1)
#   (2,2) (2,0) (255,2) (1,255)
# GT 255 is ignored; predicted 255 counts as background, so (1,255) is a (1,0) pixel.
GT_A = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.uint8)
PRED_A = np.array([[0, 1, 1, 1], [2, 0, 2, 255]], dtype=np.uint8)
CONFUSION_A = np.array(
    [
        [1, 1, 0],  # gt 0: one right, one predicted as 1
        [1, 2, 0],  # gt 1: two right, one predicted 255 -> background
        [1, 0, 1],  # gt 2: one right, one predicted as 0
    ],
    dtype=np.int64,
)


def test_hand_computed_matrix_and_metrics() -> None:
    cm = ConfusionMatrix(3, ["bg", "a", "b"])
    cm.update(PRED_A, GT_A)
    np.testing.assert_array_equal(cm.counts, CONFUSION_A)
    assert cm.counts.dtype == np.int64
    m = cm.compute()
    assert m.class_names == ("bg", "a", "b")
    # IoU = TP / (GT + pred - TP): bg 1/(2+3-1), a 2/(3+3-2), b 1/(2+1-1)
    np.testing.assert_allclose(m.iou, [1 / 4, 2 / 4, 1 / 2])
    assert m.miou == pytest.approx((0.25 + 0.5 + 0.5) / 3)
    assert m.pixel_accuracy == pytest.approx(4 / 7)  # 7 counted pixels, 4 on the diagonal
    np.testing.assert_allclose(m.precision, [1 / 3, 2 / 3, 1 / 1])
    np.testing.assert_allclose(m.recall, [1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_array_equal(m.gt_pixels, [2, 3, 2])
    np.testing.assert_array_equal(m.pred_pixels, [3, 3, 1])
    assert m.num_pixels == 7


def test_ignore_pixels_do_not_count_whatever_is_predicted() -> None:
    gt = np.full((3, 3), 255, dtype=np.uint8)
    gt[0, 0] = 1
    pred = np.array([[1, 0, 0], [2, 2, 2], [255, 255, 1]], dtype=np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[1, 1] = 1
    np.testing.assert_array_equal(cm.counts, expected)
    m = cm.compute()
    assert math.isnan(m.iou[0]) and math.isnan(m.iou[2])  # only seen at ignored pixels
    assert m.miou == 1.0
    assert m.pixel_accuracy == 1.0


def test_absent_classes_are_nan_and_left_out_of_the_mean() -> None:
    # Five classes: 2 appears nowhere; 4 is predicted only on an ignored pixel;
    # 3 is predicted but not in the GT (IoU 0, precision 0, recall undefined).
    gt = np.array([[1, 1], [0, 255]], dtype=np.uint8)
    pred = np.array([[1, 3], [0, 4]], dtype=np.uint8)
    cm = ConfusionMatrix(5)
    cm.update(pred, gt)
    expected = np.zeros((5, 5), dtype=np.int64)
    expected[0, 0] = 1
    expected[1, 1] = 1
    expected[1, 3] = 1
    np.testing.assert_array_equal(cm.counts, expected)
    m = cm.compute()
    assert m.iou[0] == 1.0
    assert m.iou[1] == pytest.approx(0.5)
    assert math.isnan(m.iou[2])
    assert m.iou[3] == 0.0
    assert math.isnan(m.iou[4])
    assert m.miou == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert m.precision[3] == 0.0 and math.isnan(m.recall[3])
    assert math.isnan(m.precision[2]) and math.isnan(m.recall[2])
    np.testing.assert_array_equal(m.present, [True, True, False, True, False])
    d = m.to_dict()
    assert d["classes"][2]["iou"] is None and d["classes"][3]["recall"] is None
    assert d["num_classes_present"] == 3


def test_class_only_in_ground_truth_has_zero_iou_and_undefined_precision() -> None:
    gt = np.array([[2, 2, 0]], dtype=np.uint8)
    pred = np.zeros((1, 3), dtype=np.uint8)
    m = SegmentationMetrics.from_confusion(_counts_of(pred, gt, 3), ("background", "x", "y"))
    assert m.iou[2] == 0.0 and m.recall[2] == 0.0 and math.isnan(m.precision[2])
    assert m.iou[0] == pytest.approx(1 / 3)
    assert m.miou == pytest.approx((1 / 3 + 0.0) / 2)


def test_predicted_255_is_background() -> None:
    gt = np.array([[0, 1, 1]], dtype=np.uint8)
    as_255 = ConfusionMatrix(2)
    as_255.update(np.array([[255, 255, 1]], dtype=np.uint8), gt)
    as_zero = ConfusionMatrix(2)
    as_zero.update(np.array([[0, 0, 1]], dtype=np.uint8), gt)
    np.testing.assert_array_equal(as_255.counts, as_zero.counts)
    np.testing.assert_array_equal(as_255.counts, [[1, 0], [1, 1]])


def test_out_of_range_prediction_is_an_error_naming_the_value() -> None:
    cm = ConfusionMatrix(21)
    gt = np.zeros((4, 4), dtype=np.uint8)
    pred = gt.copy()
    pred[2, 3] = 37
    with pytest.raises(ValueError, match=r"predicted class value 37 .*21 classes") as info:
        cm.update(pred, gt, image_id="2007_000032")
    assert "2007_000032" in str(info.value)
    # also where the GT is ignored: the prediction itself is wrong
    gt[2, 3] = 255
    with pytest.raises(ValueError, match="37"):
        cm.update(pred, gt)
    assert cm.num_images == 0 and cm.counts.sum() == 0  # nothing half-counted


def test_out_of_range_ground_truth_is_an_error() -> None:
    cm = ConfusionMatrix(21)
    gt = np.full((2, 2), 45, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"ground-truth value 45"):
        cm.update(np.zeros((2, 2), np.uint8), gt, image_id="img")


def test_size_mismatch_names_the_image_and_both_shapes() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"'a1'.*\(3, 4\).*\(4, 3\)"):
        cm.update(np.zeros((3, 4), np.uint8), np.zeros((4, 3), np.uint8), image_id="a1")


def test_bad_inputs_rejected() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="2-D"):
        cm.update(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        cm.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="0..255"):
        cm.update(np.full((2, 2), -1, np.int64), np.zeros((2, 2), np.uint8))
    for bad in (0, 256, 2.5, True):
        with pytest.raises(ValueError, match="num_classes"):
            ConfusionMatrix(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 class names for 3"):
        ConfusionMatrix(3, ["a", "b"])


def test_wider_integer_dtypes_are_accepted() -> None:
    cm = ConfusionMatrix(3)
    cm.update(PRED_A.astype(np.int64), GT_A.astype(np.int32))
    np.testing.assert_array_equal(cm.counts, CONFUSION_A)


def test_merge_equals_single_pass_and_matches_a_pixel_loop() -> None:
    rng = np.random.default_rng(7)
    num_classes = 6
    pairs = []
    for _ in range(6):
        shape = tuple(rng.integers(5, 30, size=2))
        gt = rng.integers(0, num_classes, size=shape).astype(np.uint8)
        gt[rng.random(shape) < 0.1] = 255
        pred = rng.integers(0, num_classes, size=shape).astype(np.uint8)
        pred[rng.random(shape) < 0.1] = 255
        pairs.append((pred, gt))
    single = ConfusionMatrix(num_classes)
    first, second = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    for index, (pred, gt) in enumerate(pairs):
        single.update(pred, gt)
        (first if index % 2 else second).update(pred, gt)
    merged = first.merge(second)
    assert merged is first
    np.testing.assert_array_equal(merged.counts, single.counts)
    assert merged.num_images == single.num_images == 6
    reference = sum(_counts_of(pred, gt, num_classes) for pred, gt in pairs)
    np.testing.assert_array_equal(single.counts, reference)
    a, b = merged.compute(), single.compute()
    np.testing.assert_array_equal(a.iou, b.iou)
    assert a.miou == b.miou


def test_merge_rejects_different_class_counts() -> None:
    with pytest.raises(ValueError, match="21-class .* 81-class"):
        ConfusionMatrix(81).merge(ConfusionMatrix(21))


def test_empty_matrix_gives_nan_not_a_crash() -> None:
    m = ConfusionMatrix(3).compute()
    assert math.isnan(m.miou) and math.isnan(m.pixel_accuracy)
    assert np.isnan(m.iou).all()


def test_from_confusion_validates() -> None:
    with pytest.raises(ValueError, match="square"):
        SegmentationMetrics.from_confusion(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        SegmentationMetrics.from_confusion(np.array([[1, -1], [0, 1]]))


def _counts_of(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Independent reference: count pixel by pixel in plain Python."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    for g, p in zip(gt.ravel().tolist(), pred.ravel().tolist(), strict=True):
        if g == 255:
            continue
        counts[g, 0 if p == 255 else p] += 1
    return counts

"""Export a run's instances (``instances/<id>.json``) as COCO results or YOLO-seg labels.

COCO (``--format coco``) writes, under the output folder:

* ``results.json``: a COCO *results* list (``image_id``, ``category_id``, ``segmentation``
  as compressed RLE, ``bbox``, ``score``, ``area``) that ``COCO.loadRes`` loads and
  ``COCOeval(..., "segm")`` evaluates;
* ``dataset.json``: ``images`` (numeric ``id``, ``file_name``, ``height``, ``width``,
  ``image_key`` = the run's image id) and ``categories``. For COCO datasets the ids are
  the original COCO image and category ids (so the results evaluate against the official
  annotation file); otherwise images are numbered 1..N in id order and categories 1..C in
  class order (background excluded).

YOLO-seg (``--format yolo-seg``) writes ``labels/<id>.txt`` (one line per instance:
``class x1 y1 x2 y2 ...`` with coordinates normalised to ``[0, 1]`` and ``class`` the
0-based object class: mapping index - 1), ``images/`` (symbolic links to the dataset's
images, when they can be found, so Ultralytics pairs ``images/`` with ``labels/``) and
``dataset.yaml`` (``path``, ``train``, ``val``, ``names``).

A YOLO polygon is a single ring, so masks are flattened into one ring each:

* every hole contour is spliced into its outer contour through a zero-width bridge (the
  nearest pair of points, walked there and back), so rasterising the ring with an
  even-odd or non-zero fill (``cv2.fillPoly``) leaves the hole empty;
* the parts of a multi-part mask are joined the same way, nearest points first (the idea
  of Ultralytics' ``merge_multi_segment``): the longest part first, then each part, by
  decreasing length, at its nearest point pair with the parts joined before it.

Parts smaller than three contour points (single pixels, one-pixel lines) are dropped.

The rings are those of bridging one contour after the other into the growing ring
(:func:`_bridge`, which compares every pair of points: quadratic in the parts), but
computed without scanning the growing ring (:func:`_join_fast`): the nearest pairs of all
contours at once, comparing only the points of contours whose bounding boxes can hold a
nearest pair, then the ring laid out once. A mask in 100 parts takes milliseconds, not
a quarter of a second; every ring is the same, point for point.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samwsss.atomic import atomic_write_bytes, atomic_write_json
from samwsss.classes import COCO_CLASSES, COCO_INDEX_TO_CATEGORY
from samwsss.data import open_dataset
from samwsss.mapping import load_mapping

logger = logging.getLogger(__name__)

FORMATS = ("coco", "yolo-seg")
INSTANCES_DIR = "instances"


class ExportError(ValueError):
    """The run folder cannot be exported; the message says why and how to fix it."""


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """``config.yaml`` of a run folder, or ``{}`` when absent or unreadable."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        logger.warning("cannot read %s: %s", path, error)
        return {}
    return loaded if isinstance(loaded, dict) else {}


def iter_instances(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Every ``instances/<id>.json`` record of ``run_dir`` in id order.

    Raises:
        ExportError: the run has no instances folder (it ran without ``--instances``).
    """
    folder = run_dir / INSTANCES_DIR
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise ExportError(
            f"{run_dir} has no instances ({folder} is missing or empty); "
            "run with --instances to write them"
        )
    for path in files:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ExportError(f"cannot read {path}: {error}; rerun that image") from error
        record.setdefault("image_id", path.stem)
        yield record


def run_class_names(run_dir: Path, records: list[dict[str, Any]] | None = None) -> list[str]:
    """Class names of a run, background first: from the mapping in ``config.yaml``, or
    (when that is unavailable) from the instances' ``class_id``/``category_name``."""
    mapping = read_run_config(run_dir).get("data", {}).get("mapping")
    source = mapping.get("path") if isinstance(mapping, dict) else mapping
    if isinstance(source, str):
        try:
            return list(load_mapping(source).class_names)
        except (OSError, ValueError) as error:
            logger.warning(
                "cannot load the run's mapping %r (%s); names from instances", source, error
            )
    names: dict[int, str] = {0: "background"}
    for record in records if records is not None else iter_instances(run_dir):
        for ann in record.get("annotations", []):
            names[int(ann["class_id"])] = str(ann.get("category_name", ann["class_id"]))
    return [names.get(index, f"class_{index}") for index in range(max(names) + 1)]


def _open_run_dataset(run_dir: Path) -> Any | None:
    """The run's dataset (from ``config.yaml``) when it can be opened, else ``None``."""
    data = read_run_config(run_dir).get("data", {})
    if not isinstance(data, dict) or not data.get("data"):
        return None
    mapping = data.get("mapping")
    source = mapping.get("path") if isinstance(mapping, dict) else mapping
    labels = data.get("labels")
    try:
        return open_dataset(
            data["data"],
            data.get("split"),
            mapping=source,
            labels=labels.get("path") if isinstance(labels, dict) else labels,
            gt_dir=data.get("gt_dir"),
        )
    except (OSError, ValueError) as error:
        logger.warning("cannot open the run's dataset %s: %s", data.get("data"), error)
        return None


def _coco_image_numbers(dataset: Any) -> dict[str, int]:
    """``{image stem: COCO image id}`` from a COCO dataset's annotation file."""
    path = getattr(dataset, "annotation_file", None)
    if path is None:
        return {}
    with open(path, "rb") as handle:
        images = json.load(handle).get("images", [])
    return {Path(str(image["file_name"])).stem: int(image["id"]) for image in images}


def export_coco(run_dir: Path, out: Path) -> dict[str, Path]:
    """Write ``results.json`` and ``dataset.json`` (see the module docstring).

    Returns:
        ``{"results": path, "dataset": path}``.
    """
    records = list(iter_instances(run_dir))
    names = run_class_names(run_dir, records)
    is_coco = tuple(names) == tuple(COCO_CLASSES)
    dataset = _open_run_dataset(run_dir)
    numbers = _coco_image_numbers(dataset) if is_coco and dataset is not None else {}
    categories = [
        {"id": COCO_INDEX_TO_CATEGORY[index] if is_coco else index, "name": name}
        for index, name in enumerate(names)
        if index > 0
    ]
    images: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for position, record in enumerate(records, start=1):
        key = str(record["image_id"])
        number = (numbers.get(key) or _number_in(key)) if is_coco else position
        file_name = f"{key}.jpg"
        if dataset is not None:
            try:
                file_name = dataset.image_path(key).name
            except (KeyError, ValueError):
                pass
        images.append(
            {
                "id": number,
                "file_name": file_name,
                "height": int(record["height"]),
                "width": int(record["width"]),
                "image_key": key,
            }
        )
        for ann in record.get("annotations", []):
            if "segmentation" not in ann:
                continue
            cls = int(ann["class_id"])
            results.append(
                {
                    "image_id": number,
                    "category_id": COCO_INDEX_TO_CATEGORY[cls] if is_coco else cls,
                    "segmentation": ann["segmentation"],
                    "bbox": ann["bbox"],
                    "score": ann["score"],
                    "area": ann.get("area"),
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "dataset": out / "dataset.json"}
    atomic_write_json(paths["results"], results, indent=None)
    atomic_write_json(
        paths["dataset"],
        {
            "info": {"description": f"samwsss run {run_dir}"},
            "images": images,
            "categories": categories,
            "annotations": [],
        },
        indent=None,
    )
    logger.info("COCO export: %d images, %d instances -> %s", len(images), len(results), out)
    return paths


def _number_in(key: str) -> int:
    """The trailing number of a COCO file stem (``COCO_val2014_000000000042`` -> 42)."""
    found = re.search(r"(\d+)$", key)
    if not found:
        raise ExportError(f"cannot tell the COCO image id of {key!r}; the stem ends in no number")
    return int(found.group(1))


def _bridge(ring: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Splice ``other`` into ``ring`` through a zero-width bridge between their nearest
    points: ``ring[:i+1] + other[j:] + other[:j+1] + ring[i:]`` (both ``(N, 2)``).

    ``(i, j)`` is the first nearest pair in row-major order (the smallest ``i``, then the
    smallest ``j``). Folding this over the rings is the definition of :func:`join_rings`;
    it compares every point of ``ring`` with every point of ``other``.
    """
    distance = ((ring[:, None, :].astype(np.int64) - other[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(distance)), distance.shape)
    return np.concatenate([ring[: i + 1], other[j:], other[: j + 1], ring[i:]])


#: A join that folding :func:`_bridge` does with at most this many point comparisons and
#: at most :data:`DIRECT_JOIN_BRIDGES` bridges in all is done that way (cheaper than
#: setting up :func:`_join_fast`); every other join goes through :func:`_join_fast`.
DIRECT_JOIN_PAIRS = 20_000
DIRECT_JOIN_BRIDGES = 8
#: Up to this many point comparisons in all, :func:`_nearest_ties` compares every point
#: of a ring with every point of the rings before it in its group (no bounds, no pruning).
_UNPRUNED_PAIRS = 1 << 16
#: Elements of one block of the ring-by-ring bound matrices and of the point pairs
#: compared at once in :func:`_join_fast` (bounds its memory: a few int64 arrays of this).
_BLOCK = 1 << 20


def join_rings(rings: Sequence[np.ndarray]) -> np.ndarray:
    """``rings[1:]`` spliced one after the other into ``rings[0]`` by :func:`_bridge`.

    Each ring is joined at its nearest point pair with everything joined before it (ties:
    the first such point along the joined ring, then the first point of the ring).

    Args:
        rings: ``(N_i, 2)`` integer ``(x, y)`` points each, ``N_i >= 1``.

    Returns:
        ``(sum(N_i) + 2 * (len(rings) - 1), 2)`` points, the dtype of ``rings``: exactly
        the fold of :func:`_bridge`, in near-linear time for many rings (:func:`_join_fast`).
    """
    return join_groups([rings])[0]


def join_groups(groups: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """:func:`join_rings` of each group of rings (``(N_i, 2)`` integer points each)."""
    rings = [ring for group in groups for ring in group]
    joined, lengths = _join_flat(
        np.concatenate(rings), [len(ring) for ring in rings], [len(group) for group in groups]
    )
    ends = list(itertools.accumulate(lengths))
    return [joined[end - length : end] for end, length in zip(ends, lengths, strict=True)]


def _join_flat(
    points: np.ndarray, sizes: list[int], group_sizes: list[int]
) -> tuple[np.ndarray, list[int]]:
    """:func:`join_rings` of groups of rings given as one array.

    Args:
        points: ``(N, 2)`` integer points of all rings, ring after ring, group after group.
        sizes: the point count of each ring (all ``>= 1``).
        group_sizes: the ring count of each group (all ``>= 1``).

    Returns:
        ``(joined, lengths)``: the joined ring of every group, one after the other (the
        dtype of ``points``), and the length of each.
    """
    pairs = bridges = 0
    first = 0
    for count in group_sizes:
        joined = sizes[first]
        for size in sizes[first + 1 : first + count]:
            pairs += joined * size
            joined += size + 2
        bridges += count - 1
        first += count
    if bridges and (pairs > DIRECT_JOIN_PAIRS or bridges > DIRECT_JOIN_BRIDGES):
        joined_all, lengths = _join_fast(
            points, np.array(sizes, dtype=np.int64), np.array(group_sizes, dtype=np.int64)
        )
        return joined_all, lengths.tolist()
    ends = list(itertools.accumulate(sizes))
    out, first = [], 0
    for count in group_sizes:
        rings = [points[ends[i] - sizes[i] : ends[i]] for i in range(first, first + count)]
        out.append(_fold(rings))
        first += count
    return np.concatenate(out), [len(ring) for ring in out]


def _fold(rings: Sequence[np.ndarray]) -> np.ndarray:
    """:func:`_bridge` folded over ``rings``: the definition of :func:`join_rings`."""
    out = rings[0]
    for ring in rings[1:]:
        out = _bridge(out, ring)
    return out


def _ragged_arange(firsts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(f, f + n) for f, n in zip(firsts, lengths)])`` (int64)."""
    if not len(lengths):
        return np.zeros(0, dtype=np.int64)
    lengths = lengths.astype(np.int64)
    offsets = lengths.cumsum() - lengths
    return (firsts - offsets).repeat(lengths) + np.arange(int(offsets[-1] + lengths[-1]))


def _near_box(
    x: np.ndarray, y: np.ndarray, boxes: np.ndarray, bound: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Whether each point is within squared distance ``bound`` of a box (inclusive).

    Args:
        x, y: ``(M,)`` coordinates, in runs of ``counts`` points sharing a box and bound.
        boxes: ``(4, G)`` rows ``x0, x1, y0, y1`` (inclusive bounds) per run.
        bound: ``(G,)`` squared distance per run.
        counts: ``(G,)`` points per run (``sum(counts) == M``).
    """
    dx = np.maximum(boxes[0].repeat(counts) - x, 0)
    dx = np.maximum(dx, x - boxes[1].repeat(counts))
    dy = np.maximum(boxes[2].repeat(counts) - y, 0)
    dy = np.maximum(dy, y - boxes[3].repeat(counts))
    dx *= dx
    dy *= dy
    dx += dy
    return dx <= bound.repeat(counts)


def _candidates(
    x: np.ndarray, y: np.ndarray, starts: np.ndarray, root: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ring pairs that can hold a ring's nearest pair with the rings before it.

    Args:
        x, y: ``(N,)`` integer coordinates of all rings, ring after ring (int32 only
            where they span less than ``2**15``: no squared distance overflows it).
        starts: ``(R,)`` index of each ring's first point.
        root: ``(R,)`` the first ring of each ring's group (rings only meet their group).

    Returns:
        ``(later, earlier, bound, boxes)``: pairs ``root[k] <= earlier < later = k`` of
        ring indices, ordered by ``later`` and covering every ring that is not a root;
        ``bound`` per pair is ``U_k``, the squared length of an actual point pair between
        ring ``k`` and a ring before it (so at least the nearest one), and a pair is kept
        when the gap between the two rings' bounding boxes is at most ``U_k``. ``boxes``
        is ``(4, R)``: ``x0, x1, y0, y1`` of each ring.
    """
    count, rings = len(x), len(starts)
    index = np.arange(count, dtype=np.int64)
    extreme = []  # first point of each ring with the smallest x, largest x, smallest y, ...
    for values in (x.astype(np.int64), y.astype(np.int64)):
        key = values * count + index
        extreme.append(np.minimum.reduceat(key, starts) % count)
        extreme.append(np.maximum.reduceat(key, starts) % count)
    extremes = np.stack(extreme)  # (4, R): left, right, top, bottom
    facing = extremes[[1, 0, 3, 2]]  # the points of an earlier ring facing those
    boxes = np.stack([x[extremes[0]], x[extremes[1]], y[extremes[2]], y[extremes[3]]])
    x0, x1, y0, y1 = boxes
    rows = (root != np.arange(rings)).nonzero()[0]
    later, earlier, bound = [], [], []
    step = max(1, _BLOCK // rings)
    for block in range(0, len(rows), step):
        k = rows[block : block + step]
        lo, hi = int(root[k[0]]), int(k[-1])  # the columns: rings before some row
        gx = np.maximum(x0[k, None] - x1[None, lo:hi], x0[None, lo:hi] - x1[k, None])
        gy = np.maximum(y0[k, None] - y1[None, lo:hi], y0[None, lo:hi] - y1[k, None])
        np.maximum(gx, 0, out=gx)
        np.maximum(gy, 0, out=gy)
        gap = gx * gx + gy * gy
        column = np.arange(lo, hi)[None, :]
        outside = column >= k[:, None]
        if int(root[k[-1]]) > lo:  # rows of several groups: not the other groups' rings
            outside |= column < root[k][:, None]
        gap[outside] = np.iinfo(gap.dtype).max
        nearest = gap.argmin(axis=1) + lo  # the ring before with the nearest box: its
        pa, pb = facing[:, nearest], extremes[:, k]  # extreme points and ring k's give U_k
        upper = ((x[pa] - x[pb]) ** 2 + (y[pa] - y[pb]) ** 2).min(axis=0)
        row, col = (gap <= upper[:, None]).nonzero()
        later.append(k[row])
        earlier.append(col + lo)
        bound.append(upper[row])
    return np.concatenate(later), np.concatenate(earlier), np.concatenate(bound), boxes


def _nearest_ties(
    x: np.ndarray, y: np.ndarray, starts: np.ndarray, sizes: np.ndarray, root: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every nearest point pair between each ring ``k`` and the rings before it (in its
    group: ``root[k]`` on).

    Args:
        x, y: ``(N,)`` integer coordinates of all rings, ring after ring (int32 only
            where they span less than ``2**15``: no squared distance overflows it).
        starts, sizes: ``(R,)`` first point index and point count of each ring.
        root: ``(R,)`` the first ring of each ring's group.

    Returns:
        ``(earlier_points, later_points)``: global point indices of all pairs ``(p, q)``
        with ``q`` in a ring ``k`` that is not a root, ``p`` in a ring of its group before
        ``k`` and ``|p - q|^2`` the smallest over such pairs; ordered by ``k``.

    Where that is more than :data:`_UNPRUNED_PAIRS` comparisons, only points near the other
    ring's box are compared: a point of ring ``i`` whose squared distance to the box of
    ring ``k`` exceeds ``U_k`` (:func:`_candidates`) cannot be in a nearest pair, nor can
    a point of ring ``k`` that far from ring ``i``.
    """
    joined = (root != np.arange(len(starts))).nonzero()[0]
    if int((sizes[joined] * (starts[joined] - starts[root[joined]])).sum()) <= _UNPRUNED_PAIRS:
        before = joined - root[joined]
        later = joined.repeat(before)
        earlier = _ragged_arange(root[joined], before)
        a_pair = np.arange(len(later)).repeat(sizes[earlier])
        a_point = _ragged_arange(starts[earlier], sizes[earlier])
        b_point, b_first, b_count = None, starts[later], sizes[later]
        xb, yb = x, y
    else:
        later, earlier, bound, boxes = _candidates(x, y, starts, root)
        pairs = np.arange(len(later))
        # points of the earlier ring near the later ring's box, and the other way round
        count = sizes[earlier]
        a_point = _ragged_arange(starts[earlier], count)
        keep = _near_box(x[a_point], y[a_point], boxes[:, later], bound, count)
        a_pair, a_point = pairs.repeat(count)[keep], a_point[keep]
        count = sizes[later]
        b_point = _ragged_arange(starts[later], count)
        keep = _near_box(x[b_point], y[b_point], boxes[:, earlier], bound, count)
        b_pair, b_point = pairs.repeat(count)[keep], b_point[keep]
        b_count = np.bincount(b_pair, minlength=len(later))
        b_first = b_count.cumsum() - b_count
        xb, yb = x[b_point], y[b_point]
    xa, ya = x[a_point], y[a_point]
    # each (kept) earlier point against the (kept) later points of its pair, in blocks
    repeats = b_count[a_pair]
    ends = repeats.cumsum()
    cuts = ends.searchsorted(np.arange(_BLOCK, int(ends[-1]), _BLOCK)).tolist()
    cuts = sorted({0, *cuts, len(a_point)})
    blocks = list(zip(cuts[:-1], cuts[1:], strict=True))

    def block(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        # (the later point of each comparison, as an index into xb, and its squared length)
        reps = repeats[lo:hi]
        q = _ragged_arange(b_first[a_pair[lo:hi]], reps)
        dx = xa[lo:hi].repeat(reps)
        dx -= xb[q]
        dy = ya[lo:hi].repeat(reps)
        dy -= yb[q]
        dx *= dx
        dy *= dy
        dx += dy
        return q, dx

    def found(lo: int, hi: int, q: np.ndarray, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        where = hit.nonzero()[0]
        p = a_point[lo + repeats[lo:hi].cumsum().searchsorted(where, side="right")]
        return p, (q[where] if b_point is None else b_point[q[where]])

    least = np.full(len(starts), np.iinfo(np.int64).max, dtype=np.int64)
    if len(blocks) == 1:  # the comparisons come pair after pair: one minimum per pair
        q, squared = block(0, len(a_point))
        count = np.bincount(a_pair, minlength=len(later)) * b_count
        met = count.nonzero()[0]
        first = count[met].cumsum() - count[met]
        np.minimum.at(least, later[met], np.minimum.reduceat(squared, first))
        return found(0, len(a_point), q, squared == least[later[met]].repeat(count[met]))
    for lo, hi in blocks:
        q, squared = block(lo, hi)
        if len(squared):  # (the first block may compare nothing)
            ring = later[a_pair[lo:hi]].repeat(repeats[lo:hi])
            heads, _ = _runs(ring)
            np.minimum.at(least, ring[heads], np.minimum.reduceat(squared, heads))
    found_p, found_q = [], []
    for lo, hi in blocks:
        q, squared = block(lo, hi)
        p, q = found(lo, hi, q, squared == least[later[a_pair[lo:hi]].repeat(repeats[lo:hi])])
        found_p.append(p)
        found_q.append(q)
    return np.concatenate(found_p), np.concatenate(found_q)


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal values in a non-empty ``(M,)`` array."""
    heads = np.concatenate(([0], (values[1:] != values[:-1]).nonzero()[0] + 1))
    return heads, np.concatenate((heads[1:], [len(values)])) - heads


def _join_fast(
    points: np.ndarray, sizes: np.ndarray, group_sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_join_flat` without scanning the growing rings (same arguments, as int64
    arrays, and results: the joined points and each group's length).

    The fold's choices only depend on which pairs are nearest and on the order of points
    along the joined ring, so they are taken from all nearest pairs at once
    (:func:`_nearest_ties`): ring ``k`` is attached, in order, at the first of its nearest
    points along the ring joined so far (:func:`_precedes`, needed only where a ring has
    nearest pairs at several points), and the rings are laid out once (:func:`_layout`).
    """
    count = len(sizes)
    root = (group_sizes.cumsum() - group_sizes).repeat(group_sizes)
    starts = sizes.cumsum() - sizes
    # int32 where no squared distance can overflow it: coordinates span less than 2**15
    small = int(points.max()) - int(points.min()) < 1 << 15
    x = points[:, 0].astype(np.int32 if small else np.int64)
    y = points[:, 1].astype(x.dtype)
    ties_p, ties_q = _nearest_ties(x, y, starts, sizes, root)
    label = np.arange(count).repeat(sizes)
    ring_of_q = label[ties_q]  # the ties come sorted by ring, then by both points
    heads, runs = _runs(ring_of_q)
    tails = heads + runs - 1
    joined = ring_of_q[heads]
    if len(joined) != count - len(group_sizes):
        raise AssertionError("a ring has no nearest pair")  # cannot happen: _candidates
    # the first nearest pair of each ring (by earlier point, then by its own point) is
    # the fold's choice unless its nearest pairs reach several earlier points beyond the
    # group's first ring (which is never rotated: there, the first point is the first)
    parent_a = np.full(count, -1, dtype=np.int64)
    attach_a = np.zeros(count, dtype=np.int64)
    entry_a = np.zeros(count, dtype=np.int64)
    anchor = ties_p[heads]
    parent_a[joined] = label[anchor]
    attach_a[joined] = anchor - starts[label[anchor]]
    entry_a[joined] = ties_q[heads] - starts[joined]
    several = ((anchor != ties_p[tails]) & (label[ties_p[tails]] != root[joined])).nonzero()[0]
    if len(several):
        parent, attach, entry = parent_a.tolist(), attach_a.tolist(), entry_a.tolist()
        size, first_point = sizes.tolist(), starts.tolist()
        near, far = ties_p.tolist(), ties_q.tolist()
        depth, filled = [0] * count, 0
        for row in several.tolist():
            k = int(joined[row])
            lo, hi = int(heads[row]), int(tails[row]) + 1
            best, first = near[lo], lo  # sorted by earlier point, then by ring k's point
            m = bisect.bisect_right(first_point, best) - 1
            if near[hi - 1] < first_point[m] + size[m]:
                # all in ring m: the first from its entry on
                rank = (best - first_point[m] - entry[m]) % size[m]
                for index in range(lo + 1, hi):
                    point = near[index]
                    if point != near[index - 1]:
                        other = (point - first_point[m] - entry[m]) % size[m]
                        if other < rank:
                            best, first, rank = point, index, other
            else:
                for ring in range(filled, k):  # rings from the group's root, for _precedes
                    depth[ring] = depth[parent[ring]] + 1 if parent[ring] >= 0 else 0
                filled = max(filled, k)
                for index in range(lo + 1, hi):
                    point = near[index]
                    if point != near[index - 1] and _precedes(
                        point, best, first_point, parent, attach, entry, size, depth
                    ):
                        best, first = point, index
            m = bisect.bisect_right(first_point, best) - 1
            parent[k], attach[k] = m, best - first_point[m]
            entry[k] = far[first] - first_point[k]
        parent_a = np.array(parent, dtype=np.int64)
        attach_a = np.array(attach, dtype=np.int64)
        entry_a = np.array(entry, dtype=np.int64)
    laid, lengths = _layout(parent_a, attach_a, entry_a, sizes, starts, label)
    return points[laid], lengths


def _precedes(
    p: int,
    q: int,
    starts: list[int],
    parent: list[int],
    attach: list[int],
    entry: list[int],
    size: list[int],
    depth: list[int],
) -> bool:
    """Whether global point ``p`` comes before point ``q`` (of the same group) along the
    joined ring (their first occurrences), in steps up the rings to a common one.

    Args:
        p, q: global point indices.
        starts: the first global index of each ring (ascending).
        parent, attach, entry, size: as in :func:`_layout`, for the rings joined so far.
        depth: the rings between each ring and its group's root, for the rings joined so
            far (those of ``p`` and ``q`` among them).
    """

    def position(point: int) -> tuple[int, tuple[int, int]]:
        ring = bisect.bisect_right(starts, point) - 1
        local = point - starts[ring]
        return ring, ((local - entry[ring]) % size[ring], -1)

    def lift(ring: int) -> tuple[int, tuple[int, int]]:
        # where ring ``ring`` starts inside its parent: right after the point it is
        # attached at, before the rings attached there earlier (larger index first)
        up = parent[ring]
        return up, ((attach[ring] - entry[up]) % size[up], len(size) - ring)

    (ring_p, key_p), (ring_q, key_q) = position(p), position(q)
    while depth[ring_p] > depth[ring_q]:
        ring_p, key_p = lift(ring_p)
    while depth[ring_q] > depth[ring_p]:
        ring_q, key_q = lift(ring_q)
    while ring_p != ring_q:
        ring_p, key_p = lift(ring_p)
        ring_q, key_q = lift(ring_q)
    return key_p < key_q


def _layout(
    parent: np.ndarray,
    attach: np.ndarray,
    entry: np.ndarray,
    sizes: np.ndarray,
    starts: np.ndarray,
    label: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Global point indices of the joined rings, group after group, and each group's length.

    Ring ``m`` (``parent[m] == -1``: a group's root) occupies a block of ``length[m]``
    positions: its points from ``entry[m]`` on (the rotated rank ``r`` of a point is its
    place in that order), where after the point of rank ``r`` come the blocks of the rings
    attached there (the last attached first), each followed by that point again; then,
    except for a root, ``entry[m]`` again (the way back over the bridge).

    Args:
        parent, attach, entry: ``(R,)`` int64: the ring each ring is attached to (``-1``
            for roots), the local index of the point it is attached at in that ring, and
            the local index of its own point at the bridge (``0`` for roots).
        sizes, starts: ``(R,)`` point count and first global index of each ring.
        label: ``(N,)`` the ring of each point.
    """
    count = len(sizes)
    child = (parent >= 0).nonzero()[0]
    up = parent[child]
    rank = (attach[child] - entry[up]) % sizes[up]
    span = (sizes + (parent >= 0)).tolist()
    above = parent.tolist()
    for ring in reversed(child.tolist()):  # children come after their parent
        span[above[ring]] += span[ring] + 1
    length = np.array(span, dtype=np.int64)
    # the offset of each child's block in its parent's: its points up to the attach point,
    # and the blocks (plus the repeated point) of the siblings before it
    order = np.lexsort((-child, rank, up))
    kid, kid_up = child[order], up[order]
    width = length[kid] + 1
    before = width.cumsum() - width
    if len(kid):
        heads, runs = _runs(kid_up)
        before -= before[heads].repeat(runs)
    offset = np.zeros(count, dtype=np.int64)
    offset[kid] = rank[order] + 1 + before
    roots = (parent < 0).nonzero()[0]
    where = np.zeros(count, dtype=np.int64)
    where[roots] = length[roots].cumsum() - length[roots]
    place, shift_of = where.tolist(), offset.tolist()
    for ring in child.tolist():  # parents first
        place[ring] = place[above[ring]] + shift_of[ring]
    where = np.array(place, dtype=np.int64)
    # own points: shifted by the blocks attached at lower ranks of the same ring
    total_points = len(label)
    bump = np.zeros(total_points, dtype=np.int64)
    inside = rank + 1 < sizes[up]
    np.add.at(bump, starts[up[inside]] + rank[inside] + 1, length[child[inside]] + 1)
    cumulative = bump.cumsum()
    shift = cumulative - (cumulative - bump)[starts][label]
    own = np.arange(total_points, dtype=np.int64) - starts[label]
    out = np.empty(int(length[roots].sum()), dtype=np.int64)
    out[where[label] + own + shift] = starts[label] + (entry[label] + own) % sizes[label]
    out[where[child] + length[child]] = starts[up] + attach[child]
    out[where[child] + length[child] - 1] = starts[child] + entry[child]
    return out, length[roots]


def mask_to_polygon(mask: np.ndarray) -> np.ndarray | None:
    """One ring ``(N, 2)`` of pixel ``(x, y)`` points (int32) for a binary ``(H, W)`` mask:
    holes and parts joined by zero-width bridges (module docstring, :func:`join_rings`);
    ``None`` for an empty mask.

    Each part (outer contour) is joined with its holes, in the contours' order; then the
    parts, the longest first, into the longest.
    """
    import cv2

    contours, hierarchy = cv2.findContours(
        np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return None
    tree = hierarchy[0]  # (C, 4): next, previous, first child, parent
    lengths = np.array([len(contour) for contour in contours], dtype=np.int64)
    outer = ((tree[:, 3] == -1) & (lengths >= 3)).nonzero()[0]  # holes, tiny parts: out
    if not len(outer):
        return None
    flat = np.concatenate(contours).reshape(-1, 2)
    offsets = lengths.cumsum() - lengths
    start, size = offsets[outer], lengths[outer]  # of each part, in ``source``
    source = flat
    links, counts = tree.tolist(), lengths.tolist()
    holed, rings, group_sizes = [], [], []  # parts with holes; their contours, by part
    for row in (tree[outer, 2] != -1).nonzero()[0].tolist():
        group, child = [int(outer[row])], links[outer[row]][2]
        while child != -1:  # the holes of this part, in the order they are linked
            if counts[child] >= 3:
                group.append(child)
            child = links[child][0]
        if len(group) > 1:
            holed.append(row)
            rings.extend(group)
            group_sizes.append(len(group))
    if holed:
        picked = _ragged_arange(offsets[rings], lengths[rings])
        joined, joined_lengths = _join_flat(flat[picked], lengths[rings].tolist(), group_sizes)
        source = np.concatenate([flat, joined])
        grown = np.array(joined_lengths, dtype=np.int64)
        start[holed], size[holed] = len(flat) + grown.cumsum() - grown, grown
    if len(outer) == 1:
        return source[start[0] : start[0] + size[0]]
    order = np.argsort(-size, kind="stable")  # the longest part first, ties in order
    picked = _ragged_arange(start[order], size[order])
    joined, _ = _join_flat(source[picked], size[order].tolist(), [len(outer)])
    return joined


def polygon_to_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise a ring of pixel points as Ultralytics does (``cv2.fillPoly``)."""
    import cv2

    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32).reshape(-1, 1, 2)], color=1)
    return mask.astype(bool)


#: One point of a label line: ``x.xxxxxx y.yyyyyy `` (ASCII).
_POINT_TEXT = np.dtype([("x", "S8"), ("gap", "S1"), ("y", "S8"), ("end", "S1")])


@functools.lru_cache(maxsize=256)
def _fractions(size: int) -> np.ndarray:
    """``f"{c / size:.6f}"`` for ``c = 0 .. size``, as ASCII bytes (``(size + 1,)`` ``S8``,
    read-only): every value in ``[0, 1]`` prints as eight characters."""
    values = np.arange(size + 1, dtype=np.float64) / np.float64(size)
    text = "".join(f"{value:.6f}" for value in values.tolist()).encode("ascii")
    return np.frombuffer(text, dtype="S8")


def yolo_line(cls: int, points: np.ndarray, height: int, width: int) -> str:
    """``class x1 y1 ...`` with coordinates normalised by the image size and clipped to
    ``[0, 1]``, six decimals (``points``: ``(N, 2)`` pixel ``(x, y)``). Integer points are
    copied from a table of the ``width + 1`` (``height + 1``) possible strings."""
    points = np.asarray(points)
    if points.size and np.issubdtype(points.dtype, np.integer) and height > 0 and width > 0:
        text = np.empty(len(points), dtype=_POINT_TEXT)
        text["x"] = _fractions(int(width))[points[:, 0].clip(0, width)]
        text["y"] = _fractions(int(height))[points[:, 1].clip(0, height)]
        text["gap"] = text["end"] = b" "
        return f"{cls} " + text.tobytes()[:-1].decode("ascii")
    scaled = points.astype(np.float64) / np.array([width, height], dtype=np.float64)
    coords = " ".join(f"{value:.6f}" for value in np.clip(scaled, 0.0, 1.0).reshape(-1))
    return f"{cls} {coords}"


def export_yolo(run_dir: Path, out: Path, link_images: bool = True) -> dict[str, Path]:
    """Write ``labels/<id>.txt``, ``images/`` links and ``dataset.yaml``.

    Returns:
        ``{"labels": folder, "dataset": yaml path}``.
    """
    import yaml
    from pycocotools import mask as mask_utils

    records = list(iter_instances(run_dir))
    names = run_class_names(run_dir, records)
    dataset = _open_run_dataset(run_dir) if link_images else None
    labels_dir = out / "labels"
    images_dir = out / "images"
    labels_dir.mkdir(parents=True, exist_ok=True)
    lines_written = 0
    for record in records:
        key = str(record["image_id"])
        height, width = int(record["height"]), int(record["width"])
        lines = []
        for ann in record.get("annotations", []):
            segmentation = ann.get("segmentation")
            if segmentation is None or int(ann["class_id"]) < 1:
                continue
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
            ring = mask_to_polygon(mask_utils.decode(rle))
            if ring is None:
                logger.debug("%s: instance %s has no polygon (empty or tiny)", key, ann.get("id"))
                continue
            lines.append(yolo_line(int(ann["class_id"]) - 1, ring, height, width))
        text = "\n".join(lines) + ("\n" if lines else "")
        atomic_write_bytes(labels_dir / f"{key}.txt", text.encode("ascii"), fsync=False)
        lines_written += len(lines)
        if dataset is not None:
            _link_image(dataset, key, images_dir)
    spec = {
        "path": str(out.resolve()),
        "train": "images",
        "val": "images",
        "names": {index - 1: name for index, name in enumerate(names) if index > 0},
    }
    yaml_path = out / "dataset.yaml"
    atomic_write_bytes(yaml_path, yaml.safe_dump(spec, sort_keys=False).encode("utf-8"))
    logger.info("YOLO-seg export: %d images, %d polygons -> %s", len(records), lines_written, out)
    return {"labels": labels_dir, "dataset": yaml_path}


def _link_image(dataset: Any, key: str, images_dir: Path) -> None:
    """``images/<file name>`` -> the dataset's image (a symbolic link; skipped on failure)."""
    try:
        located = dataset.image_path(key)
    except (KeyError, ValueError):
        return
    if not isinstance(located, Path):
        return  # an image in an object store: nothing to link to (the labels still go)
    source = located.resolve()
    images_dir.mkdir(parents=True, exist_ok=True)
    target = images_dir / f"{key}{source.suffix}"
    if target.is_symlink() or target.exists():
        return
    try:
        os.symlink(source, target)
    except OSError as error:
        logger.warning("cannot link %s -> %s: %s", target, source, error)


def export_run(run_dir: Path, fmt: str, out: Path | None = None) -> dict[str, Path]:
    """Export ``run_dir`` in ``fmt`` (``coco`` or ``yolo-seg``) to ``out``
    (default ``<run_dir>/export/<fmt>``)."""
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    if not run_dir.is_dir():
        raise ExportError(f"run folder {run_dir} does not exist; give the --out of a run")
    target = out if out is not None else run_dir / "export" / fmt
    if fmt == "coco":
        return export_coco(run_dir, target)
    return export_yolo(run_dir, target)

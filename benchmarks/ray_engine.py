"""Images/s of ``--engine ray`` against the local runner on this machine, with tiny models.

Builds a tiny Grounding DINO and SAM and a folder of labelled images, then runs
``samwsss text-input`` with the local runner and with Ray (1 and 2 CPU actors) into fresh
folders, and the local runner into an object store on the local disk (``objdisk://``:
whole-object puts and listings, the object-store code path without a network). Reported:
the median over ``--repeats`` of the run's own images/s (engine time: for Ray it includes
starting the actors and loading the models in them) and of the wall time of the whole
command, and the ratio to the local runner measured in the same process.

    python -m benchmarks.ray_engine --images 32 --threads 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--repeats", type=int, default=3, help="runs per engine (median)")
    args = parser.parse_args()
    import statistics

    import ray

    from samwsss.cli import cli
    from samwsss.testing.gdino import build_tiny_grounding_dino
    from samwsss.testing.object_disk import register
    from samwsss.testing.sam import build_tiny_sam

    register()

    root = Path(tempfile.mkdtemp(prefix="samwsss-ray-bench-"))
    rng = np.random.default_rng(0)
    folder = root / "imgs"
    folder.mkdir()
    labels = {}
    for index in range(args.images):
        size = (240, 320) if index % 2 else (320, 240)
        name = f"img{index:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)
        labels[name] = ["cat", "dog"]
    (root / "labels.json").write_text(json.dumps(labels))
    gdino = build_tiny_grounding_dino(root / "gdino", shortest_edge=128, longest_edge=213)
    sam = build_tiny_sam(root / "sam")
    base = [
        "text-input", "--data", str(folder), "--labels", str(root / "labels.json"),
        "--mapping", "voc", "--boxer", str(gdino), "--masker", str(sam), "--device", "cpu",
        "--batch-size", "4", "--threads", str(args.threads), "--box-threshold", "0.2",
        "--text-threshold", "0", "--instances",
    ]  # fmt: skip
    source = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
        logging_level="WARNING",
    )
    runs = {
        "local (--workers 1)": ["--workers", "1"],
        "local, out objdisk://": ["--workers", "1"],
        "ray, 1 CPU actor": ["--engine", "ray", "--ray-actors", "1", "--ray-decode-tasks", "1",
                             "--ray-cpus-per-actor", "1"],
        "ray, 2 CPU actors": ["--engine", "ray", "--ray-actors", "2", "--ray-decode-tasks", "1",
                              "--ray-cpus-per-actor", "0.5"],
        "ray, 2 CPU actors, actors write": ["--engine", "ray", "--ray-actors", "2",
                                            "--ray-decode-tasks", "1", "--ray-cpus-per-actor",
                                            "0.5", "--ray-writes", "actors"],
    }  # fmt: skip
    print(f"{args.images} images, batch 4, {args.threads} torch thread(s) per process, "
          f"{os.cpu_count()} CPUs visible, Ray cluster of {args.cpus} CPUs")  # fmt: skip
    print(f"median of {args.repeats} runs each")
    print("| engine | run images/s | ratio to local | command wall s |")
    print("|---|---|---|---|")
    only = os.environ.get("BENCH_ONLY")
    baseline = None
    for name, extra in runs.items():
        if only and only not in name and baseline is not None:
            continue
        speeds, walls = [], []
        for repeat in range(args.repeats):
            folder_name = f"{name.replace(' ', '_').replace(',', '').replace('/', '')}_{repeat}"
            out = root / "runs" / folder_name
            target = f"objdisk://{out}" if "objdisk" in name else str(out)
            started = time.perf_counter()
            result = CliRunner().invoke(cli, [*base, "--out", target, *extra])
            walls.append(time.perf_counter() - started)
            if result.exit_code != 0:
                raise SystemExit(f"{name} failed:\n{result.output}\n{result.exception!r}")
            manifest = json.loads((out / "manifest.json").read_text())
            speeds.append(manifest["timing"]["images_per_second"])
        speed = statistics.median(speeds)
        baseline = baseline or speed
        print(f"| {name} | {speed:.2f} | {speed / baseline:.2f} | {statistics.median(walls):.1f} |")
    ray.shutdown()


if __name__ == "__main__":
    main()

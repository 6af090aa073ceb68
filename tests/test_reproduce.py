"""``samwsss reproduce``: the whole plan end to end on tiny models (VOC and COCO layouts),
the results table against the survey's published figures, skip-when-done, and a run killed
inside the training step that resumes to the same table and checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.reproduce.plan import PlanOptions, build_plan, select_steps
from samwsss.testing.ram import TINY_TAGS, official_state_dict, tiny_config, write_checkpoint
from tests.data_fixtures import make_coco_tree, make_voc_tree
from tests.deeplab_fixtures import TINY_MODEL_SECTION, as_rank, one_torch_thread, run_two_ranks
from tests.forked_runs import wait_exit

#: The survey's Table 1, typed here from the paper (not from samwsss.reproduce.published):
#: (row name, dataset, column) -> mIoU %. Rows 54, 55, 56; P.M. and val columns.
SURVEY_TABLE_1 = {
    ("SAM (text input)", "voc", "pm"): 86.4,
    ("SAM (text input)", "voc", "val"): 72.7,
    ("SAM (text input)", "coco", "pm"): 64.4,
    ("SAM (text input)", "coco", "val"): 50.8,
    ("SAM (zero-shot)", "voc", "pm"): 78.2,
    ("SAM (zero-shot)", "voc", "val"): 74.0,
    ("SAM (zero-shot)", "coco", "pm"): 54.6,
    ("SAM (zero-shot)", "coco", "val"): 54.6,
    ("Fully supervised (upper bound)", "voc", "pm"): 100.0,
    ("Fully supervised (upper bound)", "voc", "val"): 75.3,
    ("Fully supervised (upper bound)", "coco", "pm"): 100.0,
    ("Fully supervised (upper bound)", "coco", "val"): 53.5,
}
#: FMA-WSSS (WACV 2024), Mask2Former Swin-L on SAM-based pseudo masks: val mIoU %.
FMA_WSSS = {"voc": 82.6, "coco": 55.4}
#: The survey's row number of each row name.
SURVEY_ROWS = {"SAM (text input)": 54, "SAM (zero-shot)": 55, "Fully supervised (upper bound)": 56}

TINY_TRAINING = {
    "model": TINY_MODEL_SECTION,
    "train": {"iterations": 4, "batch_size": 2, "crop_size": 32, "checkpoint_every": 1},
}


@pytest.fixture(autouse=True)
def _single_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, tiny_gdino_small_dir: Path, tiny_sam_session_dir: Path
) -> list[str]:
    """reproduce options for tiny models: labelling YAML (boxer, masker, a tiny RAM++ whose
    cat/dog/person tags always fire), training YAML (a tiny DeepLabV2), CPU."""
    folder = tmp_path_factory.mktemp("settings")
    tagger = write_checkpoint(
        folder / "tiny_ram_plus.pth", official_state_dict(tiny_config("ram_plus"), seed=4)
    )
    (folder / "tags.txt").write_text("".join(f"{t}\n" for t in TINY_TAGS), encoding="utf-8")
    fired = ("cat", "dog", "person")
    thresholds = "".join(f"{0.0 if t in fired else 1.0}\n" for t in TINY_TAGS)
    (folder / "thresholds.txt").write_text(thresholds, encoding="utf-8")
    labelling = {
        "boxer": str(tiny_gdino_small_dir),
        "masker": str(tiny_sam_session_dir),
        "box_threshold": 0.2,
        "text_threshold": 0.0,
        "batch_size": 2,
        "threads": 1,
        "tagger": str(tagger),
        "ram_vocabulary": str(folder / "tags.txt"),
        "ram_thresholds": str(folder / "thresholds.txt"),
    }
    (folder / "label.yaml").write_text(yaml.safe_dump(labelling), encoding="utf-8")
    (folder / "train.yaml").write_text(yaml.safe_dump(TINY_TRAINING), encoding="utf-8")
    return [
        "--config", str(folder / "label.yaml"), "--train-config", str(folder / "train.yaml"),
        "--init", "none", "--device", "cpu", "--workers", "0", "--upper-bound",
    ]  # fmt: skip


def reproduce(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["reproduce", *args], catch_exceptions=False)
    return result.exit_code, result.output


def masks_train_predict(tmp_path: Path, settings: list[str]) -> tuple[Path, Path]:
    """The VOC fixture and an uninterrupted one-process plan of steps masks, train and
    predict over it (the reference of the kill and torchrun tests)."""
    voc = make_voc_tree(tmp_path)
    reference = tmp_path / "reference"
    args = ["--out", str(reference), *settings, "--steps", "masks,train,predict"]
    code, output = reproduce("voc", "--data", str(voc), *args)
    assert code == 0, output
    return voc, reference


def plan_outputs(out: Path) -> dict[str, bytes]:
    """Every file of a plan folder except logs, manifests, locks and timings."""
    found = {}
    for path in sorted(out.rglob("*")):
        name = path.name
        if not path.is_file() or "/.lock" in str(path) or name.startswith("manifest"):
            continue
        if name.endswith((".csv", ".png.tmp")) or name in ("train_log.csv", "val_log.csv"):
            continue
        found[str(path.relative_to(out))] = path.read_bytes()
    return found


def check_table(out: Path, dataset: str) -> dict:
    """The results files hold every row and column with the published figures; returns the
    JSON document."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    survey = {
        (line["name"], line["column"]): line
        for line in results["lines"]
        if line["source"].startswith("survey Table 1")
    }
    expected = {key: value for key, value in SURVEY_TABLE_1.items() if key[1] == dataset}
    assert {(name, column) for name, _, column in expected} == set(survey)
    for (name, _, column), value in expected.items():
        line = survey[(name, column)]
        assert line["published"] == value
        assert line["source"] == f"survey Table 1, row {SURVEY_ROWS[name]}"
        assert line["ours"] is not None, line
        assert line["difference"] == pytest.approx(line["ours"] - value, abs=0.011)
    fma = [line for line in results["lines"] if line["source"].startswith("FMA-WSSS")]
    assert [line["published"] for line in fma] == [FMA_WSSS[dataset]]
    markdown = (out / "results.md").read_text(encoding="utf-8")
    for (name, _, _), value in expected.items():
        assert name in markdown and f"| {value:.1f} |" in markdown
    assert f"| {FMA_WSSS[dataset]:.1f} |" in markdown
    return results


def test_plan_steps_and_selection(tmp_path: Path) -> None:
    plan = build_plan(PlanOptions("voc", tmp_path / "voc", tmp_path / "out", upper_bound=True))
    assert [step.name for step in plan] == [
        "text-input", "text-input-pm", "zero-shot-train", "zero-shot-val", "train", "predict",
        "upper-bound-train", "upper-bound-predict",
    ]  # fmt: skip
    text, pm = plan[0], plan[1]
    assert text.argv[text.argv.index("--split") + 1] == "train_aug"
    assert pm.argv[0] == "evaluate" and pm.argv[pm.argv.index("--split") + 1] == "train"
    assert plan[4].argv[plan[4].argv.index("--masks") + 1] == str(tmp_path / "out/text-input/masks")
    assert "--masks" not in plan[6].argv
    coco = build_plan(PlanOptions("coco", tmp_path / "coco", tmp_path / "out"))
    assert [step.name for step in coco] == [
        "text-input",
        "zero-shot-train",
        "zero-shot-val",
        "train",
        "predict",
    ]
    assert coco[0].cell == ("text-input", "pm")
    assert [s.name for s in select_steps(plan, "train,predict")] == ["train", "predict"]
    with pytest.raises(ValueError, match="unknown group.*masks, zero-shot"):
        select_steps(plan, "mask")


def test_voc_plan_end_to_end_then_nothing_to_do(tmp_path: Path, settings: list[str]) -> None:
    voc = make_voc_tree(tmp_path)
    out = tmp_path / "plan"
    code, output = reproduce("voc", "--data", str(voc), "--out", str(out), *settings)
    assert code == 0, output
    results = check_table(out, "voc")
    assert results["protocol"] == "paper" and results["segmenter"] == "deeplabv2"
    for name in ("text-input", "zero-shot-train", "zero-shot-val", "train", "predict"):
        assert (out / name).is_dir(), name
    assert (out / "train" / "model_final.pt").is_file()
    before = plan_outputs(out)

    # the same plan, faster: --workers changes no output, so every step is done
    faster = [*settings, "--workers", "1", "--label-batch-size", "4"]
    again_code, again = reproduce("voc", "--data", str(voc), "--out", str(out), *faster)
    assert again_code == 0, again
    assert again.count(": done (") == 8 and "samwsss " not in again.replace("reproduce", "")
    assert plan_outputs(out) == before

    report = CliRunner().invoke(cli, ["report", str(out / "text-input")], catch_exceptions=False)
    assert report.exit_code == 0, report.output
    page = (out / "text-input" / "report" / "index.html").read_text(encoding="utf-8")
    assert "id='reproduction'" in page and "survey Table 1, row 54" in page
    whole = CliRunner().invoke(cli, ["report", str(out)])
    assert whole.exit_code != 0 and "reproduce folder" in whole.output
    assert f"samwsss report {out / 'text-input'}" in whole.output


def test_coco_plan_end_to_end(tmp_path: Path, settings: list[str]) -> None:
    coco = make_coco_tree(tmp_path, "train2014")
    make_coco_tree(tmp_path, "val2014")
    out = tmp_path / "plan"
    code, output = reproduce("coco", "--data", str(coco), "--out", str(out), *settings)
    assert code == 0, output
    check_table(out, "coco")


def _killed_in_training(args: list[str], log: Path) -> int:
    """Fork a child running ``samwsss reproduce <args>`` that SIGKILLs itself right after
    the training step's second checkpoint; its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        stream = open(log, "w", buffering=1, encoding="utf-8")  # open until _exit
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout = sys.stderr = stream
        torch.set_num_threads(1)
        import samwsss.training.train as train_module

        save = train_module.save_checkpoint
        saved = []

        def save_then_die(*a, **k):  # type: ignore[no-untyped-def]
            save(*a, **k)
            saved.append(1)
            if len(saved) == 2:
                os.kill(os.getpid(), signal.SIGKILL)

        train_module.save_checkpoint = save_then_die
        cli.main(args=["reproduce", *args], prog_name="samwsss")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # noqa: BLE001 (reported in the log and by the exit code)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)


def test_killed_in_training_resumes_to_the_same_table(tmp_path: Path, settings: list[str]) -> None:
    voc, reference = masks_train_predict(tmp_path, settings)
    steps = ["--steps", "masks,train,predict"]

    out = tmp_path / "killed"
    args = ["voc", "--data", str(voc), "--out", str(out), *settings, *steps]
    status = wait_exit(_killed_in_training(args, tmp_path / "child.log"), timeout=300)
    assert status == -signal.SIGKILL, (tmp_path / "child.log").read_text()
    assert (out / "train" / "checkpoints" / "last.pt").is_file()
    assert not (out / "train" / "model_final.pt").exists()
    code, output = reproduce(*args)
    assert code == 0, output
    assert "text-input: done" in output and "--resume" in output

    def table(folder: Path) -> list:
        lines = json.loads((folder / "results.json").read_text(encoding="utf-8"))["lines"]
        return [(line["name"], line["column"], line["ours"]) for line in lines]

    assert table(out) == table(reference)
    weights = [
        torch.load(folder / "train" / "model_final.pt", map_location="cpu", weights_only=False)
        for folder in (reference, out)
    ]
    state = [w["model"] if "model" in w else w for w in weights]
    assert state[0].keys() == state[1].keys()
    for key in state[0]:
        assert torch.equal(state[0][key], state[1][key]), key


def test_missing_layout_is_reported_before_any_step(tmp_path: Path, settings: list[str]) -> None:
    voc = make_voc_tree(tmp_path)
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").unlink()
    out = tmp_path / "plan"
    code, output = reproduce("voc", "--data", str(voc), "--out", str(out), *settings)
    assert code == 1 and "train_aug" in output and "layout" in output
    assert not out.exists()


def test_dry_run_prints_plan_weights_and_estimates(tmp_path: Path, settings: list[str]) -> None:
    voc = make_voc_tree(tmp_path)
    out = tmp_path / "plan"
    code, output = reproduce("voc", "--data", str(voc), "--out", str(out), *settings, "--dry-run")
    assert code == 0, output
    assert output.count("[to run]") == 8 and "samwsss text-input --data" in output
    assert "ESTIMATE" in output and "H100" in output
    assert "masker" in output and ": here" in output
    assert not out.exists()


def test_a_step_whose_input_is_missing_is_refused(tmp_path: Path, settings: list[str]) -> None:
    voc = make_voc_tree(tmp_path)
    out = tmp_path / "plan"
    code, output = reproduce(
        "voc", "--data", str(voc), "--out", str(out), *settings, "--steps", "predict"
    )
    assert code == 1
    assert "step predict needs the output of train" in output and "--steps train" in output


def test_missing_weights_are_named_before_any_step(
    tmp_path: Path, settings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    voc = make_voc_tree(tmp_path)
    out = tmp_path / "plan"
    args = ["voc", "--data", str(voc), "--out", str(out), *settings]
    code, output = reproduce(*args, "--masker", "facebook/sam-vit-base", "--init", "org/backbone")
    assert code == 1
    assert "hf download facebook/sam-vit-base" in output and "hf download org/backbone" in output
    assert not out.exists()


def test_other_ranks_wait_for_rank_zero_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun, rank 1 runs no predict command: it waits for rank 0's final file."""
    import threading

    import samwsss.cli.reproduce as command

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(command, "WAIT_POLL_SECONDS", 0.05)
    ran: list[list[str]] = []
    monkeypatch.setattr(command, "run_command", lambda argv, verbose: ran.append(argv) or 0)
    options = PlanOptions("voc", tmp_path / "voc", tmp_path / "out")
    plan = build_plan(options)
    predict = next(step for step in plan if step.name == "predict")
    (tmp_path / "out" / "train").mkdir(parents=True)
    (tmp_path / "out" / "train" / "model_final.pt").write_bytes(b"weights")

    def rank_zero_finishes() -> None:
        predict.out.mkdir(parents=True)
        (predict.out / "evaluation.json").write_text('{"miou": 0.5}', encoding="utf-8")

    stale = command.failure_marker(tmp_path / "out", predict, 0)
    stale.write_text("exit code 1\n", encoding="utf-8")
    os.utime(stale, (1.0, 1.0))  # an earlier invocation's: ignored
    timer = threading.Timer(0.3, rank_zero_finishes)
    timer.start()
    results = command.run_plan(plan, [predict], options, verbose=0)
    timer.join()
    assert ran == []
    assert not (tmp_path / "out" / "reproduce.json").exists()  # rank 0 records
    line = next(x for x in results["lines"] if x["step"] == "predict")
    assert line["ours"] == 50.0

    # rank 0 fails the step: the waiting rank stops with its message instead of waiting
    (predict.out / "evaluation.json").unlink()
    failing = threading.Timer(0.3, lambda: stale.write_text("exit code 1\n", encoding="utf-8"))
    failing.start()
    with pytest.raises(command.StepFailed, match="failed in another process.*exit code 1"):
        command.run_plan(plan, [predict], options, verbose=0)
    failing.join()


def _rank_worker(rank: int, world_size: int, port: int, folder: str) -> None:
    """One torchrun-like process running the plan (its arguments in ``folder/args.json``)."""
    as_rank(rank, world_size, port)
    args = json.loads((Path(folder) / "args.json").read_text(encoding="utf-8"))
    result = CliRunner().invoke(cli, ["reproduce", *args])
    (Path(folder) / f"rank{rank}.txt").write_text(f"{result.exit_code}\n{result.output}")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_under_torchrun_the_ranks_share_the_plan(tmp_path: Path, settings: list[str]) -> None:
    """Two ranks: the labelling shards together write the masks one process writes, training
    is one DDP run, predict runs once, and the table is filled."""
    voc, single = masks_train_predict(tmp_path, settings)
    steps = ["--steps", "masks,train,predict"]
    out = tmp_path / "ranks"
    args = ["voc", "--data", str(voc), "--out", str(out), *settings, *steps]
    (tmp_path / "args.json").write_text(json.dumps(args), encoding="utf-8")
    run_two_ranks(_rank_worker, tmp_path, seconds=300)
    for rank in (0, 1):
        code_text, _, log = (tmp_path / f"rank{rank}.txt").read_text().partition("\n")
        assert code_text == "0", log
    masks = sorted(p.name for p in (single / "text-input" / "masks").iterdir())
    assert sorted(p.name for p in (out / "text-input" / "masks").iterdir()) == masks
    for name in masks:
        mask = Path("text-input") / "masks" / name
        assert (out / mask).read_bytes() == (single / mask).read_bytes(), name
    state = torch.load(out / "train" / "model_final.pt", map_location="cpu", weights_only=False)
    assert state.get("world_size", 2) == 2
    record = json.loads((out / "reproduce.json").read_text(encoding="utf-8"))["steps"]
    assert sorted(record) == ["predict", "text-input", "text-input-pm", "train"]
    lines = json.loads((out / "results.json").read_text(encoding="utf-8"))["lines"]
    assert all(line["ours"] is not None for line in lines if line["row"] == "text-input")


def test_a_bad_model_option_is_a_message_not_a_traceback(
    tmp_path: Path, settings: list[str]
) -> None:
    voc = make_voc_tree(tmp_path)
    args = ["voc", "--data", str(voc), "--out", str(tmp_path / "plan"), *settings]
    result = CliRunner().invoke(cli, ["reproduce", *args, "--init", "not a hub id!"])
    # a click error (SystemExit 1), not an uncaught ValueError
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "--init 'not a hub id!'" in result.output
    result = CliRunner().invoke(cli, ["reproduce", *args, "--boxer", "no-such-boxer"])
    assert isinstance(result.exception, SystemExit) and "no-such-boxer" in result.output
    assert not (tmp_path / "plan").exists()


def test_labelling_steps_on_ray_write_the_masks_of_the_local_engine(
    tmp_path: Path, settings: list[str]
) -> None:
    pytest.importorskip("ray")
    from tests.ray_cluster import local_ray_cluster

    voc = make_voc_tree(tmp_path)
    runs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        args = ["voc", "--data", str(voc), "--out", str(out), *settings, "--steps", "masks"]
        with local_ray_cluster() if engine == "ray" else contextlib.nullcontext():
            code, output = reproduce(*args, "--engine", engine)
        assert code == 0, output
        masks = out / "text-input" / "masks"
        runs[engine] = {path.name: path.read_bytes() for path in sorted(masks.iterdir())}
        runs[engine]["pm"] = json.dumps(text_input_pm(out))
        manifest = json.loads((out / "text-input" / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["environment"]["engine"]["name"] == engine
    assert runs["ray"] == runs["local"] and len(runs["local"]) == 4


def text_input_pm(out: Path) -> float:
    """The plan's text-input P.M. mIoU from its results."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return next(
        line["ours"]
        for line in results["lines"]
        if (line["step"], line["column"]) == ("text-input-pm", "pm")
    )

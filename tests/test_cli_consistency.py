"""One CLI: every subcommand's options have help, write defaults one way, share flag names
and meanings, default ``--workers`` to the machine's count, and accept the old spellings of
renamed flags for one release (hidden, with a warning on stderr)."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from samwsss.cli import SUBCOMMANDS, cli
from samwsss.workers import MAX_DEFAULT_WORKERS, default_workers

#: A "machine" CPU count no command hard-codes, so a fixed default cannot pass by chance.
FAKE_CPUS = 7

#: Old spellings: (command, old flag) -> the new spelling the warning names.
DEPRECATED = {
    ("predict", "--no-eval"): "--no-evaluate",
    ("predict", "--palette"): "--no-plain",
    ("predict", "--amp"): "--dtype auto",
    ("predict", "--no-amp"): "--dtype float32",
}

RUN_COMMANDS = ("text-input", "zero-shot")
TRAIN_COMMANDS = ("train-segmenter", "train-deeplab")

#: Flags that mean the same on every command with the feature: flag -> (parameter name,
#: commands that must have it).
SHARED_FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "--evaluate/--no-evaluate": ("evaluate", (*RUN_COMMANDS, "predict")),
    "--plain/--no-plain": ("plain", (*RUN_COMMANDS, "predict")),
    "--dtype": ("dtype", (*RUN_COMMANDS, "predict", *TRAIN_COMMANDS)),
    "--workers": ("workers", (*RUN_COMMANDS, "predict", "evaluate", *TRAIN_COMMANDS, "report")),
    "--device": ("device", (*RUN_COMMANDS, "predict", *TRAIN_COMMANDS)),
    "--batch-size": ("batch_size", (*RUN_COMMANDS, "predict", *TRAIN_COMMANDS)),
    "--data": ("data", (*RUN_COMMANDS, "predict", "evaluate", *TRAIN_COMMANDS, "report")),
    "--split": ("split", (*RUN_COMMANDS, "predict", "evaluate", *TRAIN_COMMANDS, "report")),
    "--mapping": ("mapping", (*RUN_COMMANDS, "predict", "evaluate", *TRAIN_COMMANDS)),
    "--gt-dir": ("gt_dir", (*RUN_COMMANDS, "predict", "evaluate", *TRAIN_COMMANDS, "report")),
    "--coco-gt-rule": ("coco_gt_rule", (*RUN_COMMANDS, "predict", "evaluate", *TRAIN_COMMANDS)),
    "--overwrite": ("overwrite", (*RUN_COMMANDS, "predict")),
    "--resume": ("resume", (*RUN_COMMANDS, *TRAIN_COMMANDS)),
    "--config": ("config_file", (*RUN_COMMANDS, *TRAIN_COMMANDS)),
    "--out": ("out", (*RUN_COMMANDS, "predict", *TRAIN_COMMANDS, "report", "export")),
}

#: "(default x)", "(default: x)", "(default)" ...
_PAREN_DEFAULT = re.compile(r"\(\s*default\b", re.IGNORECASE)
#: a bracket that opens a note ("[x]", "[preset: ...]") but not "[default: ...]"; brackets
#: inside a word (pip install 'samwsss[ray]') are no notes.
_BARE_BRACKET = re.compile(r"(?<![\w'\"])\[(?!default: )")


def _command(name: str) -> click.Command:
    module_name, attribute = SUBCOMMANDS[name]
    command: click.Command = getattr(importlib.import_module(module_name), attribute)
    return command


def _options(name: str, *, hidden: bool = False) -> list[click.Option]:
    return [
        param
        for param in _command(name).params
        if isinstance(param, click.Option) and param.hidden == hidden
    ]


def _option(name: str, flag: str) -> click.Option:
    for option in _options(name):
        if flag in option.opts or flag in option.secondary_opts:
            return option
    raise AssertionError(f"{name} has no {flag}")


def _stderr(result: Result) -> str:
    """The command's stderr (click >= 8.2 keeps it apart; 8.1 mixes it into the output)."""
    try:
        return result.stderr
    except ValueError:
        return result.output


def _is_literal_default(option: click.Option) -> bool:
    """A default worth showing: not computed, not "not given", not an unset flag."""
    default = option.default
    if default is None or callable(default) or repr(default) == "Sentinel.UNSET":
        return False
    if isinstance(default, tuple) and not default:
        return False
    return not (option.is_flag and not option.secondary_opts and default is False)


@pytest.fixture
def fake_cpus(monkeypatch: pytest.MonkeyPatch) -> int:
    """The machine has :data:`FAKE_CPUS` usable CPUs (for :func:`default_workers`)."""
    import samwsss.workers

    monkeypatch.setattr(samwsss.workers, "usable_cpus", lambda: FAKE_CPUS)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == FAKE_CPUS
    return FAKE_CPUS


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_option_has_help_and_one_default_notation(name: str) -> None:
    missing = [o.opts[0] for o in _options(name) if not (o.help or "").strip()]
    assert not missing, f"{name}: options without help: {missing}"
    for option in _options(name):
        text = option.help or ""
        assert not _PAREN_DEFAULT.search(text), f"{name} {option.opts[0]}: {text!r}"
        assert not _BARE_BRACKET.search(text), f"{name} {option.opts[0]}: {text!r}"
        if _is_literal_default(option):
            # a literal default: click writes it, as [default: x]
            assert option.show_default is True, f"{name} {option.opts[0]} hides {option.default!r}"
            assert "[default: " not in text, f"{name} {option.opts[0]}: default written twice"
        else:
            assert not option.show_default, f"{name} {option.opts[0]}: nothing for click to show"


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_help_renders_defaults_in_one_form(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    options = result.output.partition("\nOptions:\n")[2]
    assert options, result.output
    assert "(dynamic)" not in options
    assert not _PAREN_DEFAULT.search(options)


def test_shared_flags_have_one_name_and_parameter() -> None:
    for flag, (parameter, commands) in SHARED_FLAGS.items():
        primary, _, secondary = flag.partition("/")
        for name in commands:
            option = _option(name, primary)
            assert option.name == parameter, f"{name} {flag}"
            assert option.opts == [primary], f"{name} {flag}: {option.opts}"
            assert option.secondary_opts == ([secondary] if secondary else []), f"{name} {flag}"


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_old_spellings_are_hidden_and_nothing_else_is(name: str) -> None:
    hidden = {opt for option in _options(name, hidden=True) for opt in option.opts}
    assert hidden == {old for (command, old) in DEPRECATED if command == name}
    result = CliRunner().invoke(cli, [name, "--help"])
    for old in hidden:
        assert old not in result.output.replace(DEPRECATED[(name, old)], "")


def test_dtype_values_mean_the_same_everywhere() -> None:
    from samwsss.choices import PIPELINE_DTYPES

    for name in ("predict", *TRAIN_COMMANDS, *RUN_COMMANDS):
        option = _option(name, "--dtype")
        assert isinstance(option.type, click.Choice)
        choices = tuple(option.type.choices)
        assert choices[0] == "auto" and set(choices) <= set(PIPELINE_DTYPES), (name, choices)
        assert "auto (bfloat16" in (option.help or ""), name


def test_run_option_defaults_in_help_are_the_presets() -> None:
    """The hand-written ``[default: x]`` of the run commands are the default preset's
    values, and ``preset paper: y`` where the paper preset differs."""
    from samwsss.pipeline.config import PRESETS

    for name in RUN_COMMANDS:
        for option in _options(name):
            field = option.name or ""
            if field not in PRESETS["default"].__dataclass_fields__ or field == "mapping":
                continue
            text = option.help or ""
            ours, paper = getattr(PRESETS["default"], field), getattr(PRESETS["paper"], field)
            if isinstance(ours, bool):
                shown = (option.opts if ours else option.secondary_opts)[0].lstrip("-")
                shown_paper = (option.opts if paper else option.secondary_opts)[0].lstrip("-")
            else:
                shown, shown_paper = str(ours), str(paper)
            if ours is not None:
                assert f"[default: {shown}" in text, f"{name} {option.opts[0]}: {text!r}"
            if paper != ours and paper is not None and name == "zero-shot":
                assert f"preset paper: {shown_paper}" in text, f"{option.opts[0]}: {text!r}"


def test_preset_help_names_every_preset() -> None:
    from samwsss.choices import PRESET_NAMES

    for name in RUN_COMMANDS:
        text = _option(name, "--preset").help or ""
        for preset in PRESET_NAMES:
            assert f"'{preset}'" in text, f"{name} --preset help omits {preset}"


# ---------------------------------------------------------------- --workers defaults


def test_default_workers_is_the_usable_cpus_at_most_eight(monkeypatch: pytest.MonkeyPatch) -> None:
    import samwsss.workers

    if hasattr(os, "sched_getaffinity"):
        assert samwsss.workers.usable_cpus() == len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for cpus, expected in ((1, 1), (3, 3), (MAX_DEFAULT_WORKERS, 8), (64, 8)):
        monkeypatch.setattr(samwsss.workers, "usable_cpus", lambda n=cpus: n)
        assert default_workers() == expected
    # torchrun's processes on one node share its CPUs
    for cpus, processes, expected in ((16, 4, 4), (64, 4, 8), (2, 4, 1), (6, 4, 1)):
        monkeypatch.setattr(samwsss.workers, "usable_cpus", lambda n=cpus: n)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
        assert default_workers() == expected
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "not a number")
    assert default_workers() == 6


@pytest.mark.parametrize("name", SHARED_FLAGS["--workers"][1])
def test_workers_help_states_the_rule(name: str) -> None:
    text = _option(name, "--workers").help or ""
    assert "[default: the CPUs this process may use" in text, text
    assert f"at most {MAX_DEFAULT_WORKERS}: {default_workers()} here]" in text, text


def _capture(monkeypatch: pytest.MonkeyPatch, target: Any, attribute: str) -> list[Any]:
    """Replace ``target.attribute`` by a recorder that stops the command (exit code 1)."""
    calls: list[Any] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        raise ValueError("stopped by the test")

    monkeypatch.setattr(target, attribute, record)
    return calls


@pytest.mark.parametrize("route", RUN_COMMANDS)
def test_run_workers_default_is_the_machines(
    route: str, fake_cpus: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import samwsss.cli.run as run_module

    seen: list[dict[str, Any]] = []

    def run(route_: str, options: dict[str, Any]) -> int:
        seen.append(run_module._resolve_settings(route_, options)[1])
        return 0  # the exit code of a complete run

    monkeypatch.setattr(run_module, "_run", run)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"workers": 0}), encoding="utf-8")
    runner = CliRunner()
    for args in ([], ["--workers", "3"], ["--config", str(config)]):
        result = runner.invoke(cli, [route, *args])
        assert result.exit_code == 0, result.output
    assert [run["workers"] for run in seen] == [fake_cpus, 3, 0]


@pytest.mark.parametrize("name", TRAIN_COMMANDS)
def test_train_workers_default_is_the_machines(
    name: str, fake_cpus: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import samwsss.cli.train as deeplab_cli

    configs: list[Any] = []

    def train(values: dict[str, Any], default_arch: str, command: str) -> None:
        configs.append(
            deeplab_cli._build_config(
                values["out"],
                values["resume"],
                values["config_file"],
                deeplab_cli._explicit_settings(values),
                values["overrides"],
                "deeplabv2",
            )
        )

    monkeypatch.setattr(deeplab_cli, "_train", train)
    base = [name, "--out", str(tmp_path / "run")]
    if name == "train-segmenter":
        base += ["--arch", "deeplabv2"]
    runner = CliRunner()
    for args in ([], ["--workers", "3"], ["--set", "workers=0"]):
        result = runner.invoke(cli, [*base, *args])
        assert result.exit_code == 0, result.output
    assert [config.workers for config in configs] == [fake_cpus, 3, 0]


def test_predict_evaluate_report_workers_default_is_the_machines(
    fake_cpus: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import samwsss.evaluation
    import samwsss.report

    calls = _capture(monkeypatch, samwsss.evaluation, "evaluate_folder")
    monkeypatch.setattr("samwsss.cli.evaluate._open_ground_truth", lambda *a: object())
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(tmp_path)])
    assert result.exit_code == 1 and "stopped by the test" in result.output
    assert calls[-1][1]["workers"] == fake_cpus

    calls = _capture(monkeypatch, samwsss.report, "build_report")
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "stopped by the test" in result.output
    assert calls[-1][1]["workers"] == fake_cpus

    predicted = _fake_prediction(monkeypatch)
    result = _predict(tmp_path)
    assert result.exit_code == 0, result.output
    assert predicted[-1]["workers"] == fake_cpus


# ---------------------------------------------------------------- old spellings


def _fake_prediction(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand-ins for what ``predict`` calls: records of ``predict_dataset``'s arguments
    (``evaluated``: whether the evaluation ran)."""
    import samwsss.cli.train as deeplab_cli
    import samwsss.data
    import samwsss.training.predict as predict_module

    records: list[dict[str, Any]] = []

    def predict_dataset(loaded: Any, dataset: Any, out: Path, **kwargs: Any) -> Any:
        records.append({**kwargs, "evaluated": False})
        return SimpleNamespace(written=0, skipped=0, out_dir=out, failed={})

    def evaluate(out: Path, dataset: Any, count_missing: bool) -> None:
        records[-1]["evaluated"] = True

    loaded = SimpleNamespace(arch=None, config=SimpleNamespace(crop_size=321), class_names=())
    monkeypatch.setattr(samwsss.data, "open_dataset", lambda *a, **k: SimpleNamespace(has_gt=True))
    monkeypatch.setattr(predict_module, "load_checkpoint_model", lambda *a, **k: loaded)
    monkeypatch.setattr(predict_module, "check_class_names", lambda *a, **k: None)
    monkeypatch.setattr(predict_module, "predict_dataset", predict_dataset)
    monkeypatch.setattr(deeplab_cli, "_evaluate_predictions", evaluate)
    return records


def _predict(tmp_path: Path, *args: str) -> Result:
    checkpoint = tmp_path / "model_final.pt"
    checkpoint.touch()
    return CliRunner().invoke(
        cli,
        ["predict", "--checkpoint", str(checkpoint), "--data", str(tmp_path), "--out",
         str(tmp_path / "preds"), *args],
    )  # fmt: skip


def _settings(record: dict[str, Any]) -> tuple[bool, bool, bool]:
    """(bf16 autocast, palette PNGs, evaluated) of one predict call."""
    return record["options"].amp, record["palette"], record["evaluated"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (["--no-eval"], ["--no-evaluate"], (True, True, False)),
        (["--palette"], ["--no-plain"], (True, True, True)),
        (["--amp"], ["--dtype", "auto"], (True, True, True)),
        (["--no-amp"], ["--dtype", "float32"], (False, True, True)),
        (["--amp", "--no-amp"], ["--dtype", "float32"], (False, True, True)),
        (["--no-amp", "--palette", "--no-eval"], ["--dtype", "float32", "--no-plain",
         "--no-evaluate"], (False, True, False)),
    ],
)  # fmt: skip
def test_predict_old_spellings_work_and_warn(
    old: list[str],
    new: list[str],
    expected: tuple[bool, bool, bool],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    records = _fake_prediction(monkeypatch)
    before = _predict(tmp_path, *old)
    assert before.exit_code == 0, before.output
    after = _predict(tmp_path, *new)
    assert after.exit_code == 0, after.output
    assert _settings(records[0]) == _settings(records[1]) == expected
    warnings = [line for line in _stderr(before).splitlines() if "deprecated" in line]
    assert len(warnings) == len(old)
    for flag, line in zip(old, warnings, strict=True):
        assert line.startswith(f"warning: {flag} is deprecated") and line.endswith(
            f"use {DEPRECATED[('predict', flag)]}."
        ), line
    assert "deprecated" not in after.output


def test_predict_new_spellings_and_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    records = _fake_prediction(monkeypatch)
    for args in ([], ["--plain"], ["--no-plain"], ["--evaluate"], ["--dtype", "float32"]):
        result = _predict(tmp_path, *args)
        assert result.exit_code == 0, result.output
        assert "deprecated" not in result.output
    assert [_settings(record) for record in records] == [
        (True, True, True),  # defaults: --dtype auto, --no-plain, --evaluate
        (True, False, True),  # --plain: plain index PNGs, as the run commands' --plain
        (True, True, True),
        (True, True, True),
        (False, True, True),
    ]


@pytest.mark.parametrize(
    "args",
    [["--no-eval", "--evaluate"], ["--palette", "--plain"], ["--no-amp", "--dtype", "auto"],
     ["--evaluate", "--no-eval"]],
)  # fmt: skip
def test_predict_refuses_old_and_new_spellings_that_contradict(
    args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    records = _fake_prediction(monkeypatch)
    result = _predict(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert "contradicts the deprecated" in result.output
    assert not records


def test_predict_old_and_new_spellings_that_agree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    records = _fake_prediction(monkeypatch)
    result = _predict(tmp_path, "--no-eval", "--no-evaluate", "--no-amp", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert _settings(records[0]) == (False, True, False)


# ---------------------------------------------------------------- train --dtype


@pytest.mark.parametrize(
    ("args", "amp"),
    [([], "auto"), (["--dtype", "auto"], "auto"), (["--dtype", "bfloat16"], "bf16"),
     (["--dtype", "float32"], "none"), (["--dtype", "float32", "--set", "amp=bf16"], "bf16")],
)  # fmt: skip
def test_train_dtype_sets_the_config_amp(
    args: list[str], amp: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import samwsss.cli.train as deeplab_cli

    configs: list[Any] = []

    def train(values: dict[str, Any], default_arch: str, command: str) -> None:
        configs.append(
            deeplab_cli._build_config(
                values["out"], False, None, deeplab_cli._explicit_settings(values),
                values["overrides"], "deeplabv2",
            )
        )  # fmt: skip

    monkeypatch.setattr(deeplab_cli, "_train", train)
    result = CliRunner().invoke(cli, ["train-deeplab", "--out", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    assert configs[0].amp == amp

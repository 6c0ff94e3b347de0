"""Commands that make or read a run directory: run, train, distill, eval, convert-weights, report."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from distil.cli.app import Config, OutDir, Overrides, Resume, app, err, load_config_file, out, print_summary, user_errors, write_run_report


@app.command()
@user_errors
def run(config: Config, overrides: Overrides = None, out_dir: OutDir = Path("runs/experiment"), resume: Resume = False) -> None:
    """The whole experiment: teacher (trained or loaded), student from scratch, distilled student, table."""
    from distil.config.lm import is_lm_config

    if is_lm_config(config):  # kind: lm — a causal LM teacher distilled into students, one per method
        return run_lm(config, overrides, out_dir, resume)
    from distil.config.translation import is_translation_config

    if is_translation_config(config):  # kind: translation — a sequence-to-sequence experiment (distil.translation)
        if resume:
            from distil.errors import ConfigError

            raise ConfigError("--resume: translation runs (kind: translation) keep no checkpoints yet; run again without --resume (it starts over)")
        from distil.config.translation import load_translation_config
        from distil.translation import run_translation

        print_summary(run_translation(load_translation_config(config, overrides or []), out_dir, console=err))
        write_run_report(out_dir)
        return
    from distil.experiment import run_experiment

    print_summary(run_experiment(load_config_file(config, overrides), out_dir, console=err, resume=resume))
    write_run_report(out_dir)


def run_lm(config: Path, overrides: list[str] | None, out_dir: Path, resume: bool) -> None:
    """``distil run`` on a ``kind: lm`` config (see distil.lm_experiment)."""
    from distil.config.lm import load_lm_config
    from distil.errors import ConfigError
    from distil.lm_experiment import run_lm_experiment
    from distil.report.lm import lm_table, write_lm_report

    cfg = load_lm_config(config, overrides or [])
    if resume:
        raise ConfigError("--resume: language-model runs (kind: lm) have no checkpoints yet; run again without --resume")
    summary = run_lm_experiment(cfg, out_dir, console=err)
    out.print(lm_table(summary))
    err.print(f"report: {write_lm_report(out_dir, summary)}", highlight=False)


class Role(str, Enum):
    teacher = "teacher"
    student = "student"


@app.command()
@user_errors
def train(
    config: Config,
    overrides: Overrides = None,
    out_dir: OutDir = Path("runs/train"),
    model: Annotated[Role, typer.Option(help="which model of the config to train on the labels")] = Role.teacher,
    resume: Resume = False,
) -> None:
    """Train one model of the config on the labels alone (the teacher, or the student from scratch)."""
    from distil.experiment import run_experiment

    cfg = load_config_file(config, overrides)
    if model is Role.teacher and cfg.teacher is None:
        from distil.errors import ConfigError

        raise ConfigError("the config has no teacher section to train")
    if model is Role.teacher and cfg.teacher.weights:
        cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"weights": None, "sha256": None})})
    steps = ["teacher"] if model is Role.teacher else ["scratch"]
    print_summary(run_experiment(cfg.model_copy(update={"scratch": True}), out_dir, steps=steps, console=err, resume=resume))
    write_run_report(out_dir)


@app.command()
@user_errors
def distill(config: Config, overrides: Overrides = None, out_dir: OutDir = Path("runs/distill"), resume: Resume = False) -> None:
    """Distil the student from the teacher (loaded from teacher.weights, or trained first)."""
    from distil.experiment import run_experiment

    print_summary(run_experiment(load_config_file(config, overrides), out_dir, steps=["teacher", "kd"], console=err, resume=resume))
    write_run_report(out_dir)


@app.command("eval")
@user_errors
def evaluate(
    config: Config,
    weights: Annotated[Path, typer.Option(help="weights to evaluate: .safetensors, or a tensor-only PyTorch checkpoint (.pt/.pth/.bin)")],
    overrides: Overrides = None,
    model: Annotated[Role, typer.Option(help="which architecture of the config the weights are for")] = Role.student,
) -> None:
    """Test accuracy of saved weights on the config's dataset."""
    from distil.engine.evaluate import accuracy
    from distil.hardware import resolve_device
    from distil.weights import load_weights

    cfg = load_config_file(config, overrides)
    data = cfg.data.load(cfg.seed)
    if model is Role.teacher and cfg.teacher is None:
        from distil.errors import ConfigError

        raise ConfigError("the config has no teacher section; evaluate with --model student")
    if model is Role.teacher:
        data = data.for_teacher()  # paired data: the teacher's own inputs
    net = (cfg.teacher if model is Role.teacher else cfg.student).build(data, cfg.seed)
    load_weights(net, weights)
    device = resolve_device(cfg.device)
    test = data.test.to(device)
    acc = accuracy(net.to(device), test.x, test.y)
    typer.echo(json.dumps({"weights": str(weights), "dataset": data.name, "split": "test", "samples": len(test), "accuracy": acc}))


@app.command("convert-weights")
@user_errors
def convert_weights(
    source: Annotated[Path, typer.Argument(help="a PyTorch checkpoint (.pt/.pth/.bin) holding a state_dict, read with weights_only=True")],
    dest: Annotated[Path, typer.Argument(help="the .safetensors file to write")],
) -> None:
    """Re-save a PyTorch state_dict as safetensors; prints its sha256 (for teacher.sha256)."""
    from distil.weights import convert_weights as convert
    from distil.weights import file_sha256

    path = convert(source, dest)
    typer.echo(json.dumps({"source": str(source), "weights": str(path), "sha256": file_sha256(path)}))


@app.command("trainable-weights")
@user_errors
def trainable_weights(
    config: Config,
    weights: Annotated[Path, typer.Argument(help="the model's full weights (.safetensors), e.g. RUN_DIR/teacher.safetensors")],
    dest: Annotated[Path, typer.Argument(help="the .safetensors file to write")],
    model: Annotated[Role, typer.Option(help="which model of the config the weights are for")] = Role.teacher,
    half: Annotated[bool, typer.Option(help="store floating-point tensors as fp16 (half the size)")] = False,
) -> None:
    """Keep only the trained part of a partly frozen model (e.g. `train_layers: 1`): a small file
    that loads onto the model the config builds (its frozen part comes from the pretrained folder)."""
    from distil.errors import ConfigError
    from distil.weights import file_sha256, load_weights, save_trainable

    cfg = load_config_file(config, [])
    section = cfg.teacher if model is Role.teacher else cfg.student
    if section is None:
        raise ConfigError(f"{config}: the config has no {model.value} section")
    data = cfg.data.load(cfg.seed)
    if model is Role.teacher:
        data = data.for_teacher()  # paired data: the teacher is built for its own inputs
    built = load_weights(section.build(data, cfg.seed), weights)
    frozen = sum(p.numel() for p in built.parameters() if not p.requires_grad)
    if not frozen:
        raise ConfigError(f"{config}: every parameter of the {model.value} ({section.arch}) is trained; there is no frozen part to leave out (set e.g. kwargs.train_layers)")
    path = save_trainable(built, dest, {"arch": section.arch, "source": weights.name}, half=half)
    typer.echo(json.dumps({"weights": str(path), "bytes": path.stat().st_size, "frozen_params": frozen, "sha256": file_sha256(path)}))


@app.command()
@user_errors
def report(run_dir: Annotated[Path, typer.Argument(help="a finished run directory (from `distil run`)")]) -> None:
    """Write RUN_DIR/report.html again: table, training curves, Pareto views, confusion, agreement, calibration."""
    from distil.report.html import write_report

    err.print(f"report: {write_report(run_dir)}", highlight=False)

"""The ``distil`` command line. Every command validates its inputs first; user errors exit with 2."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from distil.errors import DistilError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="distil: knowledge distillation for PyTorch. Run `distil run CONFIG --out DIR` for a whole experiment.",
)
# Off a terminal (CI logs, pipes) rich would wrap at 80 columns; the table needs more.
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)
out = Console(width=None if Console().is_terminal else 160)

F = TypeVar("F", bound=Callable[..., Any])

Config = Annotated[Path, typer.Argument(help="experiment YAML (see configs/)")]
Overrides = Annotated[list[str] | None, typer.Argument(help="overrides like student.epochs=5 data.val_size=0.2")]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="run directory to write")]
Resume = Annotated[bool, typer.Option("--resume", help="continue the interrupted run in --out from its checkpoints (same config and overrides)")]


def user_errors(command: F) -> F:
    """Report a user error as one line on stderr and exit 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DistilError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _config(path: Path, overrides: list[str] | None):
    from distil.config import load_config

    return load_config(path, overrides or [])


@app.command()
@user_errors
def run(config: Config, overrides: Overrides = None, out_dir: OutDir = Path("runs/experiment"), resume: Resume = False) -> None:
    """The whole experiment: teacher (trained or loaded), student from scratch, distilled student, table."""
    from distil.experiment import run_experiment

    _print_summary(run_experiment(_config(config, overrides), out_dir, console=err, resume=resume))
    _write_report(out_dir)


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

    cfg = _config(config, overrides)
    if model is Role.teacher and cfg.teacher is None:
        from distil.errors import ConfigError

        raise ConfigError("the config has no teacher section to train")
    if model is Role.teacher and cfg.teacher.weights:
        cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"weights": None, "sha256": None})})
    steps = ["teacher"] if model is Role.teacher else ["scratch"]
    _print_summary(run_experiment(cfg.model_copy(update={"scratch": True}), out_dir, steps=steps, console=err, resume=resume))
    _write_report(out_dir)


@app.command()
@user_errors
def distill(config: Config, overrides: Overrides = None, out_dir: OutDir = Path("runs/distill"), resume: Resume = False) -> None:
    """Distil the student from the teacher (loaded from teacher.weights, or trained first)."""
    from distil.experiment import run_experiment

    _print_summary(run_experiment(_config(config, overrides), out_dir, steps=["teacher", "kd"], console=err, resume=resume))
    _write_report(out_dir)


@app.command("eval")
@user_errors
def evaluate(
    config: Config,
    weights: Annotated[Path, typer.Option(help="weights to evaluate: .safetensors, or a tensor-only PyTorch checkpoint (.pt/.pth/.bin)")],
    overrides: Overrides = None,
    model: Annotated[Role, typer.Option(help="which architecture of the config the weights are for")] = Role.student,
) -> None:
    """Test accuracy of saved weights on the config's dataset."""
    from distil.data import load_dataset
    from distil.engine.evaluate import accuracy
    from distil.experiment import build, resolve_device
    from distil.weights import load_weights

    cfg = _config(config, overrides)
    data = load_dataset(cfg.data.name, path=cfg.data.path, val_size=cfg.data.val_size, seed=cfg.seed, **cfg.data.options)
    if model is Role.teacher and cfg.teacher is None:
        from distil.errors import ConfigError

        raise ConfigError("the config has no teacher section; evaluate with --model student")
    net = build(cfg.teacher if model is Role.teacher else cfg.student, data, cfg.seed)
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


class OnError(str, Enum):
    stop = "stop"
    skip = "skip"


@app.command()
@user_errors
def compress(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory (from `distil run`)")],
    overrides: Annotated[list[str] | None, typer.Argument(help="overrides of the compress section, e.g. compress.prune.rounds=2 compress.int8.mode=dynamic")] = None,
    steps: Annotated[str | None, typer.Option(help="comma-separated steps in order: prune, int8, onnx, onnx-int8")] = None,
    sparsity: Annotated[float | None, typer.Option(help="pruning sparsity in [0, 1): fraction of channels (channels) or weights (magnitude) removed")] = None,
    prune_method: Annotated[str | None, typer.Option("--prune-method", help="channels (a smaller dense model) or magnitude (unstructured)")] = None,
    epochs: Annotated[int | None, typer.Option(help="KD recovery epochs after each pruning round")] = None,
    student: Annotated[str | None, typer.Option(help="the model of summary.json to compress (default: student_<method>)")] = None,
    on_error: Annotated[OnError | None, typer.Option("--on-error", help="a failing step: stop (exit 2) or skip it and go on")] = None,
    compiled: Annotated[bool | None, typer.Option("--compiled/--no-compiled", help="also time the teacher and student with torch.compile")] = None,
) -> None:
    """Prune, quantize and export a run's distilled student: RUN_DIR/compressed/, rows in summary.json, the table.

    The steps and their settings come from the run's `compress:` section (or the defaults), then from
    the options and the compress.KEY=VALUE overrides.
    """
    from distil.compress.pipeline import compress_run, run_config

    given = {"steps": steps and f"[{steps}]", "prune.sparsity": sparsity, "prune.method": prune_method, "prune.epochs": epochs,
             "student": student, "on_error": on_error and on_error.value, "compiled": compiled}  # fmt: skip
    items = [f"compress.{k}={v}" for k, v in given.items() if v is not None]
    bad = [o for o in overrides or [] if not o.startswith("compress.")]
    if bad:
        from distil.errors import ConfigError

        raise ConfigError(f"compress overrides must be compress.KEY=VALUE (the run itself is fixed), got {', '.join(bad)}")
    config = run_config(run_dir, [*items, *(overrides or [])])
    _print_summary(compress_run(run_dir, config, console=err))
    _write_report(run_dir)


@app.command()
@user_errors
def report(run_dir: Annotated[Path, typer.Argument(help="a finished run directory (from `distil run`)")]) -> None:
    """Write RUN_DIR/report.html again: table, training curves, Pareto views, confusion, agreement, calibration."""
    from distil.html_report import write_report

    err.print(f"report: {write_report(run_dir)}", highlight=False)


@app.command()
@user_errors
def sweep(
    config: Annotated[Path, typer.Argument(help="experiment YAML with a sweep: section (see configs/sweeps/)")],
    overrides: Overrides = None,
    trials: Annotated[int, typer.Option(help="trials to have finished; run again with a larger N to add trials")] = 10,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="sweep directory: new, or the one of an interrupted sweep to resume")] = Path("runs/sweep"),
) -> None:
    """Hyper-parameter search (Optuna) over the config's sweep: section; each trial is a run directory.

    Writes DIR/results.md, results.csv, results.json and best.yaml (the best config, for `distil run`).
    The same command again resumes an interrupted sweep: finished trials are kept.
    """
    import shlex
    import sys

    from distil.sweep.results import results_table
    from distil.sweep.run import run_sweep

    summary = run_sweep(config, overrides or [], trials, out_dir, console=err, command=shlex.join(["distil", *sys.argv[1:]]))
    out.print(results_table(summary, _config(config, overrides).sweep, f"sweep — {out_dir / 'results.md'}"))
    if summary["best"] is not None:
        out.print(f"best: trial {summary['best']['trial']} → {out_dir / 'best.yaml'}", highlight=False)


bench = typer.Typer(no_args_is_help=True, help="Benchmarks that write their results as tables.")
app.add_typer(bench, name="bench")


@bench.command("methods")
@user_errors
def bench_methods_command(
    config: Config,
    overrides: Overrides = None,
    out_dir: OutDir = Path("runs/bench-methods"),
    methods: Annotated[str, typer.Option(help="comma-separated presets (see `distil methods`)")] = "kd,dkd,dist,lskd,fitnet,at,sp,rkd,pkt,crd,crd+kd",
    seeds: Annotated[int, typer.Option(min=1, help="seeds 0..N-1 for every method")] = 3,
) -> None:
    """Every method × seed on the config's teacher/student pair: DIR/results.md and DIR/results.csv."""
    import shlex
    import sys

    from distil.bench.methods import bench_methods
    from distil.engine.methods import METHODS
    from distil.errors import ConfigError

    chosen = [m.strip() for m in methods.split(",") if m.strip() and m.strip() != "scratch"]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise ConfigError(f"--methods: unknown {unknown or 'empty list'}; known methods: {', '.join(METHODS)}")
    cfg = _config(config, overrides)
    command = shlex.join(["distil", *sys.argv[1:]])
    rows = bench_methods(cfg, chosen, list(range(seeds)), out_dir, command, console=err)
    table = Table(title=f"methods — {out_dir / 'results.md'}")
    for col in ("method", "test acc", "gap closed", "s/epoch"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["method"], f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} %", f"{100 * r['gap_closed']:+.0f} %", f"{r['seconds_per_epoch']:.1f}")
    out.print(table)


class Runtime(str, Enum):
    onnxruntime = "onnxruntime"
    torch = "torch"


@app.command()
@user_errors
def serve(
    target: Annotated[Path, typer.Argument(help="a run directory (distil run --out DIR) or a MODEL.onnx file")],
    host: Annotated[str, typer.Option(help="address to bind; 127.0.0.1 keeps the server local")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8080,
    model_name: Annotated[str, typer.Option(help="the student's name in /v2/models/{name}")] = "student",
    runtime: Annotated[Runtime, typer.Option(help="onnxruntime (an .onnx from compressed/ or exported at start), or torch")] = Runtime.onnxruntime,
    max_batch: Annotated[int, typer.Option(min=1, help="samples per forward pass")] = 32,
    max_delay_ms: Annotated[float, typer.Option(min=0, help="how long a batch waits to fill")] = 2.0,
    queue_size: Annotated[int, typer.Option(min=1, help="requests waiting per model; beyond it 503")] = 256,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="request body limit; beyond it 413")] = 8.0,
    timeout_s: Annotated[float, typer.Option(min=0.001, help="per-request limit in queue and model; beyond it 504")] = 10.0,
    feedback: Annotated[Path | None, typer.Option(help="capture served inputs into this transfer-set folder (off by default)")] = None,
    feedback_max: Annotated[int, typer.Option(min=1, help="feedback cap: samples")] = 10_000,
    feedback_max_mb: Annotated[float, typer.Option(min=0.001, help="feedback cap: MB of inputs")] = 256.0,
) -> None:
    """Serve a run's student (and teacher) over the Open Inference Protocol v2, with /predict and a page at /."""
    import uvicorn

    from distil.serve import BatchSettings, FeedbackWriter, ServeSettings, create_app, load_models

    models = load_models(target, runtime.value, model_name)
    writer = None
    if feedback is not None:
        main = models[0]
        writer = FeedbackWriter(feedback, main.class_names, main.input_shape, main.mean, main.std, main.name, feedback_max, int(feedback_max_mb * 2**20))
    settings = ServeSettings(BatchSettings(max_batch, max_delay_ms, queue_size), int(max_body_mb * 2**20), timeout_s)
    for m in models:
        err.print(f"{m.name}: {m.role}, {m.backend.name}, input {list(m.input_shape)}, {m.num_classes} classes, from {m.info.get('weights', m.info.get('source'))}", highlight=False)
    err.print(f"serving on http://{host}:{port}/ (Open Inference Protocol v2 under /v2, /predict, /metrics)", highlight=False)
    uvicorn.run(create_app(models, settings, writer), host=host, port=port, log_level="warning")


@bench.command("speed")
@user_errors
def bench_speed_command(
    config: Annotated[Path | None, typer.Argument(help="experiment YAML (default: the Fashion-MNIST demo)")] = None,
    overrides: Overrides = None,
    out_dir: OutDir = Path("runs/bench-speed"),
    epochs: Annotated[int | None, typer.Option(min=1, help="epochs per run (default: 3; --quick: the config's)")] = None,
    samples: Annotated[int | None, typer.Option(min=1, help="use only this many training samples")] = None,
    quick: Annotated[bool, typer.Option(help="scikit-learn digits and small CNNs: seconds, for a smoke test")] = False,
    reference_workers: Annotated[int, typer.Option(min=0, help="DataLoader workers of the tutorial-style reference (the tutorial uses 2)")] = 2,
) -> None:
    """Distillation vs the student alone vs a tutorial-style KD loop, interleaved: DIR/speed.json."""
    import shlex
    import sys

    from distil.bench.speed import bench_speed, quick_config, rows

    if quick:
        cfg = quick_config()
    else:
        cfg = _config(config or Path("configs/fashion_mnist/demo.yaml"), overrides)
        epochs = epochs or 3
    result = bench_speed(cfg, out_dir, epochs=epochs, samples=samples, reference_workers=reference_workers, command=shlex.join(["distil", *sys.argv[1:]]), log=lambda m: err.print(m, highlight=False))
    table = Table(title=f"speed — {out_dir / 'speed.json'} ({result['threads']} threads)")
    for col in ("inputs", "run", "median s/epoch", "× student", "test acc"):
        table.add_column(col)
    for row in rows(result):
        table.add_row(*row)
    out.print(table)
    for key in ("kd_over_student_noaug", "kd_over_student_aug", "reference_over_kd_noaug", "reference_over_kd_aug"):
        out.print(f"{key} = {result[key]:.3f}", highlight=False)


def _print_summary(summary: dict) -> None:
    from distil.engine.distributed import is_main_process
    from distil.report import summary_table

    if not is_main_process():  # under torchrun, rank 0 prints and writes for all
        return
    out.print(summary_table(summary))


def _write_report(run_dir: Path) -> None:
    """The run's report.html; the run is finished and its summary.json kept even if drawing fails."""
    from distil.engine.distributed import is_main_process

    if not is_main_process():
        return
    try:
        from distil.html_report import write_report

        err.print(f"report: {write_report(run_dir)}", highlight=False)
    except Exception as e:  # noqa: BLE001 — a plotting failure must not turn a finished run into a failed command
        err.print(f"[yellow]report: not written ({escape(f'{type(e).__name__}: {e}')}); `distil report {run_dir}` tries again[/]", highlight=False)


def _listing(title: str, items: dict[str, str]) -> None:
    table = Table(title=title)
    table.add_column("name")
    table.add_column("description")
    for name, description in items.items():
        table.add_row(name, description)
    out.print(table)


@app.command()
def models() -> None:
    """List the registered model architectures."""
    from distil.models import list_models

    _listing("models (any nn.Module also works as 'package.module:factory')", list_models())


@app.command()
def datasets() -> None:
    """List the registered datasets."""
    from distil.data import list_datasets

    _listing("datasets", list_datasets())


@app.command()
def methods() -> None:
    """List the method presets (use `distill.method` in YAML; adjust terms with `distill.terms`)."""
    from distil.engine.methods import list_methods

    _listing("methods", list_methods())
    out.print("Strategies that combine models (ensembles, mutual learning, born-again, ...): `distil strategies`.")


@app.command()
def strategies() -> None:
    """List the training strategies (`strategy.name` in YAML; examples in configs/strategies/)."""
    from distil.strategies.registry import list_strategies

    _listing("strategies (strategy: {name: ..., ...}; none = teacher → student)", list_strategies())


@app.command()
def losses() -> None:
    """List the registered losses."""
    from distil.losses import list_losses

    _listing("losses", list_losses())


def main() -> None:
    from distil.runtime import set_threads

    set_threads()
    app()


if __name__ == "__main__":
    main()

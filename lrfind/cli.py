"""The `lrfind` command line.

    lrfind run --model lenet --dataset fashion-mnist
    lrfind apply runs/<name>/result.json train.yaml --schedule onecycle
    lrfind train --config configs/lenet-onecycle.yaml --baseline constant
    lrfind list
    lrfind env

The only module that talks to the terminal. Errors of the `LrfindError` family are caught in
one place (`_reported_errors`) and printed without a traceback; torch is imported only by the
commands that need it, so `lrfind --help` starts fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lrfind.errors import LrfindError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from lrfind.config import RunConfig, SweepSettings, TrainConfig
    from lrfind.pipeline import RunOutcome
    from lrfind.sweep import StepRecord
    from lrfind.train import EpochRecord, TrainingOutcome

app = typer.Typer(
    name="lrfind",
    help="Learning-rate range test for PyTorch: sweep, find where the loss falls fastest and "
    "where it diverges, and get base/max LR bounds for your schedule.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)

EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
    """Print lrfind's own errors as one red paragraph and exit with their code."""
    try:
        yield
    except LrfindError as error:
        error_console.print(f"[bold red]Error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        error_console.print("[yellow]Interrupted; nothing was written.[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None


Opt = typer.Option


@app.command()
def run(
    model: Annotated[
        str | None, Opt(help="lenet, mlp, cnn, torchvision:<name>, file.py:fn or module:fn.")
    ] = None,
    dataset: Annotated[
        str | None, Opt(help="fashion-mnist, mnist, file.py:fn or module:fn.")
    ] = None,
    data_dir: Annotated[Path | None, Opt(help="Folder searched first for dataset files.")] = None,
    download: Annotated[
        bool | None,
        Opt(
            "--download/--no-download",
            help="Allow torchvision to download a missing built-in dataset. \\[default: download]",
        ),
    ] = None,
    optimizer: Annotated[str | None, Opt(help="sgd, adam or adamw. \\[default: sgd]")] = None,
    momentum: Annotated[
        str | None, Opt(metavar="FLOAT", help="SGD momentum. \\[default: 0]")
    ] = None,
    weight_decay: Annotated[
        str | None, Opt(metavar="FLOAT", help="Weight decay. \\[default: 0]")
    ] = None,
    batch_size: Annotated[
        str | None, Opt(metavar="INTEGER", help="Mini-batch size. \\[default: 256]")
    ] = None,
    start_lr: Annotated[
        str | None, Opt(metavar="FLOAT", help="First LR of the sweep. \\[default: 1e-7]")
    ] = None,
    end_lr: Annotated[
        str | None, Opt(metavar="FLOAT", help="Last LR of the sweep. \\[default: 10]")
    ] = None,
    steps: Annotated[
        str | None,
        Opt(metavar="INTEGER", help="Number of mini-batches (LR steps). \\[default: 100]"),
    ] = None,
    mode: Annotated[str | None, Opt(help="exp or linear LR growth. \\[default: exp]")] = None,
    smoothing: Annotated[
        str | None, Opt(metavar="FLOAT", help="EMA factor in [0, 1) for the loss. \\[default: 0.9]")
    ] = None,
    divergence_factor: Annotated[
        str | None,
        Opt(
            metavar="FLOAT",
            help="Stop when the smoothed loss exceeds this x its best. \\[default: 4]",
        ),
    ] = None,
    method: Annotated[
        str | None,
        Opt(help="Suggestion method: bottom, steepest, valley or minimum. \\[default: bottom]"),
    ] = None,
    repeats: Annotated[
        str | None,
        Opt(
            metavar="INTEGER",
            help="Focused sweeps after the full one; their median is recommended. \\[default: 5]",
        ),
    ] = None,
    refine: Annotated[
        bool | None,
        Opt(
            "--refine/--no-refine",
            help="Repeats sweep just below the divergence point (refine) or the full range.",
        ),
    ] = None,
    auto_range: Annotated[
        bool | None,
        Opt("--auto-range", help="Widen or narrow the LR range and rerun when it was wrong."),
    ] = None,
    val_batches: Annotated[
        str | None,
        Opt(
            metavar="INTEGER",
            help="Held-out batches whose loss is recorded every step. \\[default: 0]",
        ),
    ] = None,
    weights: Annotated[
        Path | None, Opt(help="Start from this state dict (torch.save(model.state_dict(), path)).")
    ] = None,
    seed: Annotated[
        str | None,
        Opt(metavar="INTEGER", help="Seed for model init and data order. \\[default: 0]"),
    ] = None,
    device: Annotated[str | None, Opt(help="auto, cpu, cuda or mps. \\[default: auto]")] = None,
    precision: Annotated[
        str | None,
        Opt(help="fp32, bf16 or fp16 (autocast; fp16 with a GradScaler). \\[default: fp32]"),
    ] = None,
    accumulate: Annotated[
        str | None,
        Opt(metavar="INTEGER", help="Batches per optimizer step (one LR). \\[default: 1]"),
    ] = None,
    channels_last: Annotated[
        bool | None, Opt("--channels-last", help="Channels-last memory for conv models.")
    ] = None,
    compile: Annotated[
        bool | None, Opt("--compile", help="torch.compile the model (pays on long sweeps).")
    ] = None,
    stack_repeats: Annotated[
        str | None,
        Opt(
            help="Train the repeats' model copies stacked, as one run: auto (on CUDA), on or "
            "off. \\[default: auto]"
        ),
    ] = None,
    out: Annotated[
        Path | None, Opt(help="Run folder. \\[default: runs/<model>-<dataset>-<time>]")
    ] = None,
    overwrite: Annotated[
        bool | None, Opt("--overwrite", help="Replace an existing run folder.")
    ] = None,
    quiet: Annotated[
        bool | None, Opt("--quiet", "-q", help="No live progress, only the summary.")
    ] = None,
    config: Annotated[
        Path | None,
        Opt("--config", "-c", help="YAML, TOML or JSON file of options; flags override it."),
    ] = None,
    emit: Annotated[
        str | None,
        Opt(
            help="Print a ready snippet of the --schedule to stdout: yaml, toml, json or "
            "python (the scheduler lines). The summary then goes to stderr."
        ),
    ] = None,
    schedule: Annotated[
        str, Opt(help="Schedule kind for --emit (see `lrfind apply --help`).")
    ] = "onecycle",
    tensorboard: Annotated[
        Path | None, Opt(help="Also write each sweep's loss and LR as TensorBoard scalars here.")
    ] = None,
) -> None:
    """Sweep the LR, analyse the curve and write sweep.csv, sweep.png and result.json."""
    # Numbers arrive as text and are checked by the config, whose messages name the value.
    flags = {
        key: value
        for key, value in locals().items()
        if key not in ("config", "emit", "schedule", "tensorboard") and value is not None
    }
    with _reported_errors():
        from lrfind.config import check_choice, load_config_file, resolve_config
        from lrfind.schedules import check_kind

        if emit is not None:
            check_choice("--emit format", emit, EMIT_FORMATS)
        check_kind(schedule)
        if tensorboard is not None:
            from lrfind.tensorboard import check_tensorboard

            check_tensorboard()
        file_values = load_config_file(config) if config is not None else None
        settings = resolve_config(
            file_values, flags, source=str(config) if config else "config file"
        )
        rank = int(os.environ.get("RANK", "0"))  # under torchrun, rank 0 alone reports
        if rank:
            settings = dataclasses.replace(settings, quiet=True)
        outcome = _run_with_progress(settings)
        if rank:
            return
        _print_summary(outcome, error_console if emit else console)
        if tensorboard is not None:
            from lrfind.tensorboard import write_sweep_scalars

            summary = json.dumps(outcome.document["recommendation"], indent=2, default=str)
            write_sweep_scalars(tensorboard / outcome.out.name, outcome.search, summary)
        if emit is not None and outcome.search.recommendation is not None:
            print(_snippet(outcome.document, schedule, emit), end="")
        if outcome.search.interrupted:
            error_console.print(
                f"[yellow]Interrupted:[/] the steps recorded so far were analysed and written "
                f"to {escape(str(outcome.out))}/ (result.json says interrupted)."
            )
            raise typer.Exit(EXIT_INTERRUPTED)
        if outcome.search.recommendation is None:
            error_console.print(
                "[bold red]No recommendation:[/] the curve holds no usable descent. "
                "See the diagnostics above; the curve was saved for inspection."
            )
            raise typer.Exit(1)


def _run_with_progress(settings: RunConfig) -> RunOutcome:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lrfind.pipeline import run as run_pipeline

    progress: Progress | None = None
    task: TaskID | None = None

    def on_stage(name: str) -> None:
        nonlocal progress
        if settings.quiet:
            return
        if progress is not None:
            progress.stop()
            progress = None
        if name == "sweeping":
            progress = Progress(
                TextColumn("[bold]{task.description:>10}[/]"),
                BarColumn(),
                TextColumn("step {task.completed:>4.0f}/{task.total:.0f}"),
                TextColumn("lr {task.fields[lr]:>9.3g}"),
                TextColumn("loss {task.fields[loss]:>8.4g}"),
                TimeElapsedColumn(),
                console=error_console,
                transient=False,
            )
            progress.start()
        else:
            error_console.print(f"[dim]{name}...[/]")

    def on_sweep(repeats: tuple[int, ...], sweep: SweepSettings) -> None:
        nonlocal task
        if progress is None:
            return
        if task is not None:  # a sweep that stopped early shows where it stopped
            progress.update(task, total=progress.tasks[task].completed)
        if repeats == (0,):
            name = "full sweep"
        elif len(repeats) == 1:
            name = f"repeat {repeats[0]}/{settings.repeats}"
        else:
            name = f"repeats {repeats[0]}-{repeats[-1]} stacked"
        task = progress.add_task(name, total=sweep.steps, lr=float("nan"), loss=float("nan"))

    def on_step(record: StepRecord) -> None:
        if progress is not None and task is not None:
            progress.update(
                task, completed=record.step + 1, lr=record.lr, loss=record.smoothed_loss
            )

    with _graceful_stop() as stop:

        def on_stage_and_stop(name: str) -> None:
            stop.sweeping = name == "sweeping"
            on_stage(name)

        try:
            return run_pipeline(
                settings,
                on_stage=on_stage_and_stop,
                on_step=on_step,
                on_sweep=on_sweep,
                stop_requested=stop.requested,
            )
        finally:
            if progress is not None:
                progress.stop()


class _StopSignal:
    """What Ctrl-C or SIGTERM means at the moment it arrives."""

    def __init__(self) -> None:
        self.sweeping = False  # during the sweeps: finish the step, then write what we have
        self.stop = False

    def requested(self) -> bool:
        return self.stop

    def handle(self, signum: int, frame: object) -> None:
        if self.sweeping and not self.stop:
            self.stop = True
            error_console.print(
                "[yellow]Stopping after this step; the partial curve will be written "
                "(press Ctrl-C again to abort without writing).[/]"
            )
            return
        raise KeyboardInterrupt  # before or after the sweeps, or a second signal: abort


@contextlib.contextmanager
def _graceful_stop() -> Iterator[_StopSignal]:
    """SIGINT and SIGTERM stop a sweep cleanly; the previous handlers come back afterwards."""
    import signal
    import threading

    stop = _StopSignal()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    for number in previous:
        signal.signal(number, stop.handle)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


EMIT_FORMATS = ("yaml", "toml", "json", "python")


def _snippet(document: dict[str, Any], kind: str, fmt: str) -> str:
    """The `kind` schedule of a result as text to paste: a config block or Python lines."""
    from lrfind.schedules import Bounds, python_snippet, schedule_section

    steps_per_epoch = document.get("data", {}).get("steps_per_epoch")
    section = schedule_section(kind, Bounds.of(document), steps_per_epoch)
    if fmt == "python":
        return python_snippet(section, steps_per_epoch or 1)
    from lrfind.configedit import render_snippet

    return render_snippet(section, fmt)


def _print_summary(outcome: RunOutcome, console: Console = console) -> None:
    document = outcome.document
    recommendation = document["recommendation"]
    sweep = document["sweep"]
    table = Table(title="lrfind recommendation", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    for key, meaning in (
        ("base_lr", "low bound of a cyclical schedule"),
        ("max_lr", "peak of a cyclical / one-cycle schedule"),
        ("lr", "a single constant rate"),
    ):
        value = recommendation[key]
        table.add_row(key, "-" if value is None else f"{value:.3g}", meaning)
    interval = recommendation.get("interval")
    if interval:
        table.add_row(
            "interval",
            f"{interval[0]:.3g} to {interval[1]:.3g}",
            f"max_lr of the {recommendation['repeats']} repeats "
            f"({recommendation['interval_log10_width']:.2f} decades wide)",
        )
    table.add_row(
        "confidence", recommendation["confidence"], "; ".join(recommendation["confidence_reasons"])
    )
    divergence = sweep["divergence_lr"]
    table.add_row(
        "full sweep",
        sweep["stop_reason"],
        f"{sweep['steps_run']}/{sweep['steps_planned']} steps"
        + ("" if divergence is None else f", diverged at lr {divergence:.3g}"),
    )
    console.print(table)
    _print_diagnostics(recommendation["diagnostics"], console)
    _print_snippets(recommendation["schedules"], console)
    steps = document.get("steps_total", sweep["steps_run"])
    seconds = document["timings"]["total_s"]
    console.print(
        f"Wrote {escape(str(outcome.out))}/ (sweep.csv, sweep.png, result.json) "
        f"in {seconds:.1f} s ({steps} training steps in all).",
        soft_wrap=True,
    )


def _print_diagnostics(messages: list[str], console: Console = console) -> None:
    for message in messages:
        console.print(f"[yellow]![/] {escape(message)}", soft_wrap=True)


def _print_snippets(schedules: dict[str, Any] | None, console: Console = console) -> None:
    if schedules:
        onecycle = schedules["onecycle"]
        triangular = schedules["triangular"]
        step_size = triangular.get("step_size_up") or (
            f"{triangular.get('step_size_up_epochs')} * steps_per_epoch"
        )
        console.print("[bold]Paste into your training script:[/]")
        console.print(
            f"  OneCycleLR(optimizer, max_lr={onecycle['max_lr']!r}, "
            f"div_factor={onecycle['div_factor']!r}, pct_start={onecycle['pct_start']}, "
            "total_steps=..., cycle_momentum=False)",
            soft_wrap=True,
            highlight=False,
        )
        console.print(
            f"  CyclicLR(optimizer, base_lr={triangular['base_lr']!r}, "
            f"max_lr={triangular['max_lr']!r}, step_size_up={step_size}, mode='triangular', "
            "cycle_momentum=False)",
            soft_wrap=True,
            highlight=False,
        )
        console.print(
            "[dim]More kinds: `lrfind apply RESULT CONFIG --schedule KIND` or "
            "`lrfind run --emit yaml|toml|json|python --schedule KIND`.[/]"
        )


@app.command()
def analyze(
    csv_file: Annotated[
        Path, typer.Argument(help="sweep.csv of a run, or any CSV with lr and loss columns.")
    ],
    method: Annotated[
        str, Opt(help="Suggestion method: bottom, steepest, valley or minimum.")
    ] = "bottom",
    smoothing: Annotated[float, Opt(help="EMA factor in [0, 1) for the loss.")] = 0.9,
    divergence_factor: Annotated[
        float, Opt(help="Diverged once the smoothed loss exceeds this x its best.")
    ] = 4.0,
    out: Annotated[
        Path | None, Opt(help="Output folder. \\[default: reanalysed-<method> beside the CSV]")
    ] = None,
    overwrite: Annotated[bool, Opt("--overwrite", help="Replace an existing folder.")] = False,
) -> None:
    """Re-analyse a saved curve and write sweep.csv, sweep.png and result.json for it."""
    with _reported_errors():
        from lrfind.analysis import METHODS
        from lrfind.config import SweepSettings, check_choice
        from lrfind.report import analyze_file

        check_choice("method", method, list(METHODS))
        SweepSettings(smoothing=smoothing, divergence_factor=divergence_factor)  # validates
        reanalysis = analyze_file(
            csv_file,
            method=method,
            smoothing=smoothing,
            divergence_factor=divergence_factor,
            out=out,
            overwrite=overwrite,
        )
        recommendation = reanalysis.document["recommendation"]
        table = Table(title=f"lrfind analyze ({method})", show_header=True, header_style="bold")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        for key in ("base_lr", "max_lr", "lr"):
            value = recommendation[key]
            table.add_row(key, "-" if value is None else f"{value:.3g}")
        table.add_row("confidence", recommendation["confidence"])
        console.print(table)
        _print_diagnostics(recommendation["confidence_reasons"] + recommendation["diagnostics"])
        _print_snippets(recommendation["schedules"])
        console.print(f"Wrote {escape(str(reanalysis.out))}/", soft_wrap=True)
        if reanalysis.recommendation is None:
            raise typer.Exit(1)


KIND_HELP = (
    "Schedule kind: onecycle, triangular, triangular2, exp_range, warmup-cosine, "
    "warmup-multistep or constant."
)


@app.command()
def apply(
    result_file: Annotated[Path, typer.Argument(help="result.json of `lrfind run`.")],
    train_config: Annotated[
        Path, typer.Argument(help="Training config to write into: YAML, TOML or JSON.")
    ],
    schedule: Annotated[
        str | None, Opt(help=KIND_HELP + " \\[default: the config's kind, else onecycle]")
    ] = None,
    key: Annotated[
        str, Opt(help="Dotted path of the mapping to write, e.g. train.scheduler.")
    ] = "scheduler",
    epochs: Annotated[
        int | None,
        Opt(help="Training length, to fit whole cycles. \\[default: the config's `epochs`]"),
    ] = None,
    dry_run: Annotated[bool, Opt("--dry-run", help="Show the diff; write nothing.")] = False,
    force: Annotated[
        bool, Opt("--force", help="Write even if the result was measured on another setup.")
    ] = False,
) -> None:
    """Write a recommended schedule into a training config, keeping its comments and order."""
    from rich.syntax import Syntax

    with _reported_errors():
        from lrfind.config import check_result_matches
        from lrfind.configedit import lookup, plan_change, read_config, split_key
        from lrfind.export import read_result
        from lrfind.schedules import Bounds, check_kind, schedule_section

        document = read_result(result_file)
        bounds = Bounds.of(document)
        keys = split_key(key)
        before, current = read_config(train_config)
        existing = lookup(current, keys)
        kind = schedule or (existing.get("kind") if isinstance(existing, dict) else None)
        kind = kind or "onecycle"
        check_kind(kind)
        # the setup is read from the top level and from the mapping that holds the schedule
        parent = lookup(current, keys[:-1]) if len(keys) > 1 else None
        setup = {**current, **(parent if isinstance(parent, dict) else {})}
        if epochs is None and isinstance(setup.get("epochs"), int):
            epochs = setup["epochs"]
        if not force and isinstance(document.get("config"), dict):
            check_result_matches(document["config"], setup, result_file, str(train_config))
        steps_per_epoch = document.get("data", {}).get("steps_per_epoch")
        section = schedule_section(kind, bounds, steps_per_epoch, epochs)
        change = plan_change(train_config, before, current, key, section)
        if not change.changed:
            console.print(f"{escape(str(train_config))} already holds this {kind} schedule.")
            return
        console.print(Syntax(change.diff(), "diff", theme="ansi_dark", background_color="default"))
        if dry_run:
            console.print(f"[yellow]Dry run:[/] {escape(str(train_config))} was not changed.")
            return
        change.write()
        console.print(f"Wrote the {kind} schedule into {escape(str(train_config))} ({key}).")


@app.command()
def train(
    config: Annotated[
        Path | None,
        Opt("--config", "-c", help="Training config (YAML, TOML or JSON); see configs/."),
    ] = None,
    schedule: Annotated[
        list[str] | None,
        Opt(help=KIND_HELP + " Repeat to compare several. \\[default: the config's kind]"),
    ] = None,
    epochs: Annotated[
        str | None, Opt(metavar="INTEGER", help="Epochs per schedule. \\[default: 5]")
    ] = None,
    baseline: Annotated[
        str | None,
        Opt(help="Also train a constant-LR baseline at the recommended lr: `constant`."),
    ] = None,
    result: Annotated[
        Path | None,
        Opt(help="Take the bounds from this result.json. \\[default: sweep first]"),
    ] = None,
    seed: Annotated[str | None, Opt(metavar="INTEGER", help="\\[default: 0]")] = None,
    device: Annotated[str | None, Opt(help="auto, cpu, cuda or mps.")] = None,
    out: Annotated[
        Path | None, Opt(help="Run folder. \\[default: runs/train-<model>-<dataset>-<time>]")
    ] = None,
    overwrite: Annotated[
        bool | None, Opt("--overwrite", help="Replace an existing run folder.")
    ] = None,
    force: Annotated[
        bool, Opt("--force", help="Use a result measured on another setup anyway.")
    ] = False,
    tensorboard: Annotated[
        Path | None, Opt(help="Also write LR, loss and accuracy as TensorBoard scalars here.")
    ] = None,
    quiet: Annotated[bool | None, Opt("--quiet", "-q", help="No live progress.")] = None,
) -> None:
    """Train with the recommended schedule(s), and a constant baseline, and compare them."""
    flags = {
        name: value
        for name, value in (
            ("epochs", epochs),
            ("result", result),
            ("seed", seed),
            ("device", device),
            ("out", out),
            ("overwrite", overwrite),
            ("quiet", quiet),
        )
        if value is not None
    }
    with _reported_errors():
        from lrfind.config import TrainConfig, check_choice, load_config_file, merge_options
        from lrfind.train import BASELINE

        if baseline is not None:
            check_choice("baseline", baseline, (BASELINE,))
        file_values = load_config_file(config) if config is not None else None
        settings = merge_options(
            TrainConfig, file_values, flags, str(config) if config else "config file"
        )
        kinds = list(schedule or [])
        if not kinds:
            kinds = [settings.scheduler["kind"] if settings.scheduler else "onecycle"]
        outcome = _train_with_progress(settings, kinds, baseline is not None, force, tensorboard)
        _print_training_table(outcome)


def _train_with_progress(
    settings: TrainConfig,
    kinds: list[str],
    baseline: bool,
    force: bool,
    tensorboard: Path | None,
) -> TrainingOutcome:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lrfind.train import run_training

    progress = Progress(
        TextColumn("[bold]{task.description:>16}[/]"),
        BarColumn(),
        TextColumn("step {task.completed:>6.0f}/{task.total:.0f}"),
        TextColumn("lr {task.fields[lr]:>9.3g}"),
        TimeElapsedColumn(),
        console=error_console,
        disable=settings.quiet,
    )
    tasks: dict[str, TaskID] = {}

    def on_stage(name: str) -> None:
        if not settings.quiet and not name.startswith("training"):
            error_console.print(f"[dim]{name}...[/]")

    def on_step(name: str, step: int, total: int, lr: float, loss: float) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total, lr=lr)
        if step % 10 == 0 or step + 1 == total:
            progress.update(tasks[name], completed=step + 1, lr=lr)

    def on_epoch(name: str, record: EpochRecord) -> None:
        if settings.quiet:
            return
        test = "" if record.test_accuracy is None else f", test acc {record.test_accuracy:.4f}"
        progress.console.print(
            f"  {escape(name)} epoch {record.epoch}/{settings.epochs}: train loss "
            f"{record.train_loss:.4f}, train acc {record.train_accuracy:.4f}{test}"
        )

    with progress, _graceful_stop():
        return run_training(
            settings,
            kinds,
            baseline=baseline,
            force=force,
            tensorboard=tensorboard,
            on_stage=on_stage,
            on_step=on_step,
            on_epoch=on_epoch,
        )


def _print_training_table(outcome: TrainingOutcome) -> None:
    table = Table(title="lrfind train: schedules compared", header_style="bold")
    for column in ("schedule", "parameters", "test acc", "best test acc", "test loss", "time"):
        table.add_column(
            column, justify="left" if column in ("schedule", "parameters") else "right"
        )
    for run in outcome.runs:
        parameters = ", ".join(
            f"{name} {value:.3g}"
            for name, value in run.section.items()
            if name in ("lr", "base_lr", "max_lr") and isinstance(value, float)
        )
        final = run.final
        best = max((record.test_accuracy or 0.0) for record in run.history)
        table.add_row(
            run.name,
            parameters,
            "-" if final.test_accuracy is None else f"{final.test_accuracy:.4f}",
            f"{best:.4f}",
            "-" if final.test_loss is None else f"{final.test_loss:.4f}",
            f"{run.seconds:.0f} s",
        )
    console.print(table)
    console.print(
        f"Bounds from {escape(outcome.bounds_source)}. Wrote {escape(str(outcome.out))}/ "
        "(history.csv, history.png, train.json).",
        soft_wrap=True,
    )


@app.command("list")
def list_specs() -> None:
    """List built-in models and datasets, and the other spec forms."""
    from lrfind.data import BUILTIN_DATASETS
    from lrfind.models import BUILTIN_MODELS

    models = Table(title="models", show_header=True, header_style="bold")
    models.add_column("name")
    models.add_column("description")
    for name, builtin in BUILTIN_MODELS.items():
        models.add_row(name, builtin.description)
    models.add_row(
        "torchvision:<name>", "any torchvision classifier, adapted to channels and classes"
    )
    models.add_row("file.py:fn / module:fn", "your factory returning an nn.Module")
    console.print(models)
    datasets = Table(title="datasets", show_header=True, header_style="bold")
    datasets.add_column("name")
    datasets.add_column("classes")
    datasets.add_column("offline source")
    for name, dataset in BUILTIN_DATASETS.items():
        source = dataset.system_dirs[0] + (
            f" (apt: {dataset.apt_package})" if dataset.apt_package else ""
        )
        datasets.add_row(name, str(dataset.num_classes), source)
    datasets.add_row("file.py:fn / module:fn", "-", "your factory returning a torch Dataset")
    console.print(datasets)


@app.command()
def env() -> None:
    """Print versions, devices and where datasets were found, for bug reports."""
    from lrfind.data import BUILTIN_DATASETS, cache_dir, locate
    from lrfind.environment import (
        device_report,
        environment_summary,
        package_versions,
        resolve_device,
    )

    with _reported_errors():
        devices = device_report()
        summary = environment_summary(resolve_device("auto"))
        table = Table(title="lrfind environment", show_header=False)
        table.add_column("item")
        table.add_column("value")
        table.add_row("python", summary["python"])
        table.add_row("platform", summary["platform"])
        for name, version in package_versions().items():
            table.add_row(name, version or "not installed")
        table.add_row("auto device", f"{devices['auto_device']} ({summary['device_name']})")
        table.add_row(
            "cuda",
            f"{devices['cuda_available']} (build {devices['cuda_version']}) "
            + ", ".join(devices["cuda_devices"]),
        )
        table.add_row("mps", str(devices["mps_available"]))
        table.add_row("cpu threads", str(devices["cpu_threads"]))
        table.add_row("cache dir", str(cache_dir()))
        for name, dataset in BUILTIN_DATASETS.items():
            found = locate(dataset, None)
            table.add_row(f"data: {name}", str(found[0].parent) if found else "not found")
        console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The `lrfind` command line.

    lrfind run --model lenet --dataset fashion-mnist
    lrfind analyze runs/<name>/sweep.csv --method valley
    lrfind apply runs/<name>/result.json train.yaml --schedule onecycle
    lrfind train --config configs/lenet-onecycle.yaml --baseline constant
    lrfind list
    lrfind env

The only module that talks to the terminal: it parses flags, shows progress and tables, and
hands everything else to lrfind.commands. Errors of the `LrfindError` family are caught in one
place (`_reported_errors`) and printed without a traceback; torch is imported only by the
commands that need it, so `lrfind --help` starts fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import inspect
import json
import math
import os
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lrfind import __version__
from lrfind.core.schedules import DEFAULT_KIND, SCHEDULE_KINDS
from lrfind.core.settings import PANELS
from lrfind.errors import ConfigError, LrfindError
from lrfind.settings.options import RunConfig, TrainConfig, describe_default
from lrfind.settings.paths import os_refusal

if TYPE_CHECKING:
    from rich.progress import TaskID

    from lrfind.commands.run import RunOutcome
    from lrfind.commands.train import TrainingOutcome
    from lrfind.core.settings import SweepSettings
    from lrfind.engine.distributed import Ranks
    from lrfind.engine.trainer import EpochRecord


class _FlagHelp:
    """Typer renders its own flags (--help, --install-completion) with a `<bool>` value;
    lrfind's flags show none."""

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        return params


class _Command(_FlagHelp, typer.core.TyperCommand):
    def invoke(self, ctx: Any) -> Any:
        global _invoked
        _invoked = ctx  # what the error handler names a refused path's argument by
        return super().invoke(ctx)


_invoked: Any = None  # the context of the command running now (its parameters and values)


class _Group(_FlagHelp, typer.core.TyperGroup):
    pass


app = typer.Typer(
    name="lrfind",
    cls=_Group,
    help="Learning-rate range test for PyTorch: sweep, find where the loss falls fastest and "
    "where it diverges, and get base/max LR bounds for your schedule.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion: the shell completes every choice
    pretty_exceptions_enable=False,
)


class _Terminal:
    """sys.stdout or sys.stderr (looked up at every write, so a capture is followed) as lrfind
    prints to it: a terminal that fails never fails the command. A closed pipe (`| head`), a
    vanished terminal or a full disk behind a redirect stops the printing, not the work: what
    the command writes to disk and its exit code are those of a working terminal. A character
    the terminal's encoding lacks (PYTHONIOENCODING=ascii) is printed as an escape."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lost: object = None  # the stream that failed; nothing more is written to it

    @property
    def stream(self) -> Any:
        return getattr(sys, self._name)

    def write(self, text: str) -> int:
        stream = self.stream
        if stream is self._lost:
            return len(text)
        try:
            try:
                stream.write(text)
            except UnicodeEncodeError:
                encoding = getattr(stream, "encoding", None) or "ascii"
                stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except (OSError, ValueError, AttributeError):  # closed, or None (no descriptor)
            self._lose(stream)
        return len(text)

    def flush(self) -> None:
        stream = self.stream
        if stream is not self._lost:
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                self._lose(stream)

    def _lose(self, stream: Any) -> None:
        """Write nothing more to `stream`; point its descriptor at the null device, so that
        what its buffer still holds is not flushed into the closed pipe at exit (which Python
        reports, exiting with 120)."""
        self._lost = stream
        with contextlib.suppress(Exception):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, stream.fileno())
            finally:
                os.close(null)

    def isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (OSError, ValueError, AttributeError):
            return False

    def fileno(self) -> int:
        return int(self.stream.fileno())

    @property
    def encoding(self) -> str:
        return str(getattr(self.stream, "encoding", None) or "utf-8")


stdout, stderr = _Terminal("stdout"), _Terminal("stderr")
# `file.py:name:` in a message is text, not an emoji code
console = Console(file=typing.cast(typing.TextIO, stdout), emoji=False)
error_console = Console(file=typing.cast(typing.TextIO, stderr), emoji=False)

EXIT_INTERRUPTED = 130
KINDS_TEXT = ", ".join(SCHEDULE_KINDS)


# What ends a command early: Ctrl-C, `kill` and a closed terminal.
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextlib.contextmanager
def _handled_signals(handler: Any) -> Iterator[None]:
    """Route every stop signal (those this platform has) to `handler` while the block runs;
    the previous handlers come back afterwards. Only the main thread may set them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    previous = {number: signal.getsignal(number) for number in numbers}
    for number in numbers:
        signal.signal(number, handler)
    try:
        yield
    finally:
        for number, handler_before in previous.items():
            signal.signal(number, handler_before)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: staged files are removed on the way out


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
    """Print lrfind's own errors as one red paragraph and exit with their code. A stop signal
    interrupts the command as Ctrl-C does, so that nothing is left half-written."""
    try:
        with _handled_signals(_interrupt):
            yield
    except OSError as error:
        if error.filename is None:  # not about a path (a closed pipe is handled where it is)
            raise
        # A path the OS refused where no reader turned it into a message of its own: said in
        # the one wording (lrfind.settings.paths), naming the argument that gave it.
        message = os_refusal(error, _argument_of(error.filename))
        error_console.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
        raise typer.Exit(ConfigError.exit_code) from None
    except LrfindError as error:
        error_console.print(f"[bold red]Error:[/] {escape(str(error))}", soft_wrap=True)
        if _debugging() and error.__cause__ is not None:
            import traceback

            trace = "".join(traceback.format_exception(error.__cause__))
            error_console.print(trace, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        error_console.print("[yellow]Interrupted; nothing was written.[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _argument_of(filename: object) -> str:
    """The flag or argument of the running command whose value holds `filename` (a spec such
    as `file.py:fn` holds its file's name; a path holds the folders below it), else a plain
    word."""
    context = _invoked
    name = os.fsdecode(str(filename))
    if context is None or not name:
        return "the path"
    for parameter in context.command.params:
        values = context.params.get(parameter.name or "")
        for value in values if isinstance(values, (list, tuple)) else [values]:
            if value is not None and (name in str(value) or str(value) in name):
                opts = [opt for opt in parameter.opts if opt.startswith("--")]
                return opts[0] if opts else (parameter.metavar or str(parameter.name)).upper()
    return "the path"


_debug_flag = False  # set by --debug


def _debugging() -> bool:
    """--debug or LRFIND_DEBUG=1: show the traceback behind an error from the user's code."""
    return _debug_flag or os.environ.get("LRFIND_DEBUG", "") not in ("", "0")


def _version(value: bool) -> None:
    if value:
        console.print(f"lrfind {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, metavar="", help="Print the version."
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            metavar="",
            help="Show the traceback behind an error raised by your model, dataset or loss "
            "(also LRFIND_DEBUG=1). \\[default: off]",
        ),
    ] = False,
) -> None:
    """Learning-rate range test for PyTorch: sweep, find where the loss falls fastest and
    where it diverges, and get base/max LR bounds for your schedule."""
    global _debug_flag
    _debug_flag = debug


def Opt(
    help: str,
    *names: str,
    metavar: str | None = None,
    flag: bool = False,
    panel: str = "Output",
    choices: Any = (),
) -> Any:
    """A command's own option (not a setting); flags take no value and show none; `choices`
    (a tuple, or a function giving one) are what the shell completes."""
    return typer.Option(
        *names,
        help=help,
        metavar="" if flag else metavar,
        show_default=False,
        rich_help_panel=panel,
        autocompletion=_completer(choices) if choices else None,
    )


METAVARS = {int: "INTEGER", float: "FLOAT", Path: "PATH"}


def _emit_formats() -> tuple[str, ...]:
    from lrfind.commands.apply import EMIT_FORMATS

    return EMIT_FORMATS


def _completer(choices: Any) -> Any:
    """Shell completion of a setting's choices (a tuple, or a function giving one)."""

    def complete(incomplete: str) -> list[str]:
        given = choices() if callable(choices) else choices
        return [choice for choice in given if choice.startswith(incomplete)]

    return complete


def setting_parameter(config: type, field: dataclasses.Field[Any]) -> inspect.Parameter:
    """The Typer option of one settings field, from its declaration (lrfind.core.settings
    .option): values arrive as text and are checked by the settings, whose messages name the
    value and the fix; a switch takes none."""
    meta = field.metadata
    hint = typing.get_type_hints(config)[field.name]
    base = next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)
    choices = tuple(meta["choices"])
    text = meta["help"] + (f" One of: {', '.join(choices)}." if choices else "")
    text += f" \\[default: {describe_default(config, field.name)}]"
    names = (meta["flag"] or "--" + field.name.replace("_", "-")).split()
    kind: Any = str | None
    if base is bool:
        kind = bool | None
    elif typing.get_origin(base) is dict:
        kind = list[str] | None  # --optimizer-arg KEY=VALUE, repeated
    option = typer.Option(
        *names,
        help=text,
        metavar="" if base is bool else meta["metavar"] or METAVARS.get(base, "NAME"),
        show_default=False,
        rich_help_panel=meta["panel"],
        autocompletion=_completer(choices) if choices else None,
    )
    return inspect.Parameter(
        field.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[kind, option],
    )


def _panel_order(parameter: inspect.Parameter) -> int:
    """Arguments first, then options panel by panel (lrfind.core.settings.PANELS)."""
    info = typing.get_args(parameter.annotation)[1]
    panel = getattr(info, "rich_help_panel", None)
    return PANELS.index(panel) if panel in PANELS else -1


def with_settings(config: type, names: tuple[str, ...] | None = None) -> Any:
    """Give a command one option per field of `config` (or of `names` among them), declared
    where the field is; the command receives the options given as `flags`, by field name."""

    def decorate(command: Any) -> Any:
        own = [
            parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for parameter in inspect.signature(command, eval_str=True).parameters.values()
            if parameter.name != "flags"
        ]
        fields = [
            field for field in dataclasses.fields(config) if names is None or field.name in names
        ]
        settings = [setting_parameter(config, field) for field in fields]

        @functools.wraps(command)
        def with_flags(**given: Any) -> Any:
            flags = {field.name: given.pop(field.name) for field in fields}
            return command(
                flags={name: value for name, value in flags.items() if value is not None},
                **given,
            )

        parameters = sorted([*own, *settings], key=_panel_order)
        with_flags.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        with_flags.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_flags

    return decorate


@app.command(cls=_Command)
@with_settings(RunConfig)
def run(
    flags: dict[str, Any],
    config: Annotated[
        Path | None,
        Opt(
            "YAML, TOML or JSON file of options; flags override it. \\[default: none]",
            "--config",
            "-c",
            metavar="PATH",
            panel="Model and data",
        ),
    ] = None,
    emit: Annotated[
        str | None,
        Opt(
            "Print a ready snippet of the --schedule to stdout: yaml, toml, json or python "
            "(the scheduler lines). The summary then goes to stderr. \\[default: none]",
            metavar="NAME",
            choices=_emit_formats,
        ),
    ] = None,
    schedule: Annotated[
        str,
        Opt(
            f"Schedule kind for --emit: {KINDS_TEXT}. \\[default: {DEFAULT_KIND}]",
            metavar="NAME",
            choices=SCHEDULE_KINDS,
        ),
    ] = DEFAULT_KIND,
    tensorboard: Annotated[
        Path | None,
        Opt(
            "Also write each sweep's loss and LR as TensorBoard scalars here. \\[default: none]",
            metavar="PATH",
        ),
    ] = None,
) -> None:
    """Sweep the LR, analyse the curve and write sweep.csv, sweep.png and result.json."""
    with _reported_errors():
        _run(flags, config, emit, schedule, tensorboard)


def _run(
    flags: dict[str, Any],
    config: Path | None,
    emit: str | None,
    schedule: str,
    tensorboard: Path | None,
) -> None:
    from lrfind.commands.apply import EMIT_FORMATS
    from lrfind.core.schedules import check_kind
    from lrfind.engine.distributed import Ranks
    from lrfind.settings.options import check_choice, load_config_file, resolve_config

    if not flags.get("optimizer_args", True):
        del flags["optimizer_args"]  # Typer gives an empty list for no --optimizer-arg
    if emit is not None:
        check_choice("--emit format", emit, EMIT_FORMATS)
    check_kind(schedule)
    if tensorboard is not None:
        from lrfind.outputs.tensorboard import check_tensorboard

        check_tensorboard(tensorboard)
    file_values = load_config_file(config) if config is not None else None
    settings = resolve_config(file_values, flags, source=str(config) if config else "config file")
    ranks = Ranks.from_environment()
    if ranks.rank:  # under torchrun, rank 0 alone reports
        settings = dataclasses.replace(settings, quiet=True)
    with _graceful_stop() as stop:
        outcome = _run_with_progress(settings, ranks, stop)
        stop.phase = "finished"
        if ranks.rank:
            return
        _report_run(outcome, emit, schedule, tensorboard, stopped=stop.requested)


def _report_run(
    outcome: RunOutcome,
    emit: str | None,
    schedule: str,
    tensorboard: Path | None,
    stopped: Callable[[], bool],
) -> None:
    """The summary of a written run, its snippet and its exit code."""
    from lrfind.commands.apply import snippet

    _print_summary(outcome, error_console if emit else console)
    if tensorboard is not None:
        from lrfind.outputs.tensorboard import write_sweep_scalars

        summary = json.dumps(outcome.document["recommendation"], indent=2, default=str)
        write_sweep_scalars(tensorboard / outcome.out.name, outcome.search, summary)
    if emit is not None and outcome.search.recommendation is not None:
        stdout.write(snippet(outcome.document, schedule, emit))
        stdout.flush()
    if outcome.search.recommendation is None:
        _print_no_recommendation(outcome.document)
    if outcome.search.interrupted:
        error_console.print(
            f"[yellow]Interrupted:[/] the steps recorded so far were analysed and written "
            f"to {escape(str(outcome.out))}/ (result.json says interrupted)."
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if stopped() and not outcome.search.interrupted:
        error_console.print(
            f"[yellow]Interrupted after the sweeps:[/] the results were written whole to "
            f"{escape(str(outcome.out))}/."
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.search.recommendation is None:
        raise typer.Exit(1)


def _run_with_progress(settings: RunConfig, ranks: Ranks, stop: _StopSignal) -> RunOutcome:
    from lrfind.commands import run as run_command
    from lrfind.outputs.progress import SweepProgress, sweep_name

    shown = SweepProgress(not settings.quiet, error_console)

    def on_stage(name: str) -> None:
        stop.phase = {"sweeping": "sweeping", "writing results": "writing"}.get(name, "before")
        shown.stop()
        if name != "sweeping" and not settings.quiet:
            error_console.print(f"[dim]{name}...[/]")

    def on_sweep(repeats: tuple[int, ...], sweep: SweepSettings) -> None:
        shown.sweep(sweep_name(repeats, settings.repeats), sweep.steps)

    try:
        return run_command.run(
            settings,
            on_stage=on_stage,
            on_step=shown.step,
            on_sweep=on_sweep,
            stop_requested=stop.requested,
            ranks=ranks,
        )
    finally:
        shown.stop()


class _StopSignal:
    """What a stop signal (Ctrl-C, SIGTERM, SIGHUP) means at the moment it arrives: before
    the sweeps, abort (nothing to keep); during them, finish the step and write what was
    recorded; while the results are written, finish writing them (a second signal aborts,
    writing nothing); once written, finish the summary. Either way the exit code is 130."""

    def __init__(self) -> None:
        self.phase = "before"  # before, sweeping, writing, finished
        self.stop = False

    def requested(self) -> bool:
        return self.stop

    def handle(self, signum: int, frame: object) -> None:
        if self.phase == "finished":
            self.stop = True
            return
        if self.phase in ("sweeping", "writing") and not self.stop:
            self.stop = True
            what = (
                "Stopping after this step; the partial curve will be written"
                if self.phase == "sweeping"
                else "The sweeps are done; finishing writing the results"
            )
            error_console.print(f"[yellow]{what} (press Ctrl-C again to abort without writing).[/]")
            return
        raise KeyboardInterrupt  # before the sweeps, or a second signal: abort


@contextlib.contextmanager
def _graceful_stop() -> Iterator[_StopSignal]:
    """A stop signal ends a sweep cleanly; the previous handlers come back afterwards."""
    stop = _StopSignal()
    with _handled_signals(stop.handle):
        yield stop


def _horizon_meaning(horizon: dict[str, Any]) -> str:
    """Where the training length came from, and what the optimizer's factor did."""
    known = (
        "the default: --epochs says how long you train"
        if horizon["source"] == "default"
        else f"from {horizon['source']}"
    )
    factor = float(horizon["optimizer_factor"])
    if horizon.get("measured") is False:
        return f"{known}; the optimizer's step size could not be measured, rates as read"
    if isinstance(horizon.get("unscaled"), str):
        return f"{known}; {horizon['unscaled']}"
    if abs(math.log10(factor)) < 0.05:
        return known
    return (
        f"{known}; rates x{factor:.3g}: the optimizer's steps at the sweeps' reading (step "
        f"{horizon['reading_step']:g}) are {factor:.3g} times those at training's peak (step "
        f"{horizon['peak_step']:,})"
    )


def _print_summary(outcome: RunOutcome, console: Console = console) -> None:
    document = outcome.document
    recommendation = document["recommendation"]
    sweep = document["sweep"]
    divergence = sweep["divergence_lr"]
    swept = f"{sweep['steps_run']}/{sweep['steps_planned']} steps" + (
        "" if divergence is None else f", diverged at lr {divergence:.3g}"
    )
    if recommendation is None:
        console.print(f"[bold]Full sweep:[/] {sweep['stop_reason']}, {swept}.")
    else:
        table = _rates_table("lrfind recommendation", recommendation, with_meaning=True)
        interval = recommendation.get("interval")
        if interval:
            table.add_row(
                "interval",
                f"{interval[0]:.3g} to {interval[1]:.3g}",
                f"{_interval_meaning(recommendation)} "
                f"({recommendation['interval_log10_width']:.2f} decades wide)",
            )
        reasons = "; ".join(recommendation["confidence_reasons"])
        table.add_row("confidence", recommendation["confidence"], reasons)
        horizon = recommendation.get("horizon")
        if isinstance(horizon, dict):
            steps = horizon["training_steps"]
            table.add_row(
                "for a run of",
                f"{steps:,} step{'' if steps == 1 else 's'}",
                _horizon_meaning(horizon),
            )
        table.add_row("full sweep", sweep["stop_reason"], swept)
        console.print(table)
        _print_members(document["optimizer"].get("optimizers"), console)
    _print_diagnostics(document["diagnostics"], console)
    schedule_free = document["optimizer"].get("schedule_free")
    if schedule_free is not None:
        _print_schedule_free(schedule_free, console)
    elif recommendation is not None:
        _print_snippets(recommendation["schedules"], console)
    steps = document.get("steps_total", sweep["steps_run"])
    aside = document.get("steps_set_aside", 0)
    trained = f"{steps + aside} training steps in all" + (
        f", {aside} of them in sweeps set aside" if aside else ""
    )
    seconds = document["timings"]["total_s"]
    console.print(
        f"Wrote {escape(str(outcome.out))}/ (sweep.csv, sweep.png, result.json) "
        f"in {seconds:.1f} s ({trained}).",
        soft_wrap=True,
    )


def _print_no_recommendation(document: dict[str, Any]) -> None:
    """Why the curve holds no answer, on stderr: the reasons, each with what to change."""
    error_console.print(
        "[bold red]No recommendation:[/] the curve holds no answer, so no rate is printed or "
        "written (result.json has recommendation: null; the curve and the plot were saved):",
        soft_wrap=True,
    )
    for reason in document["no_recommendation"]:
        error_console.print(f"  - {escape(reason)}", soft_wrap=True)


def _print_schedule_free(answer: dict[str, Any], console: Console) -> None:
    """A schedule-free optimizer's answer: its own lr and warm-up, and no schedule."""
    warmup = answer["warmup_steps"]
    console.print(
        f"[bold]Schedule-free:[/] lr={answer['lr']:.4g}"
        + (f", warmup_steps={warmup}" if warmup is not None else "")
        + " in the optimizer's constructor, and no scheduler (max_lr above; its averaging "
        "does a schedule's decay).",
        soft_wrap=True,
        highlight=False,
    )


def _print_members(members: list[dict[str, Any]] | None, console: Console) -> None:
    """Each optimizer of a set with its max_lr: the rates above are the first group's."""
    for member in members or []:
        rates = ", ".join(f"{rate:.3g}" for rate in member["rates"]["max_lr"])
        console.print(
            f"  {escape(member['name'])} ({escape(member['class'])}, "
            f"{member['parameters']:,} parameters): max_lr {rates}",
            soft_wrap=True,
            highlight=False,
        )


RATE_MEANINGS = {
    "base_lr": "low bound of a cyclical schedule",
    "max_lr": "peak of a cyclical / one-cycle schedule",
    "lr": "a single constant rate",
}


def _interval_meaning(recommendation: dict[str, Any]) -> str:
    """What the interval row spans: all repeats' max_lr, or the middle ones around the median."""
    from lrfind.core.analysis import middle_suggestions  # numpy: not for --help

    found, repeats = len(recommendation["suggestions"]), recommendation["repeats"]
    middle = len(middle_suggestions(recommendation["suggestions"]))
    if middle == found and found == repeats:
        return f"max_lr of the {repeats} repeats"
    if middle == found:
        return f"max_lr of the {found} of {repeats} repeats that gave one"
    return f"the middle {middle} of the {found} repeats' max_lr, around their median"


def _rates_table(title: str, recommendation: dict[str, Any], *, with_meaning: bool) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    if with_meaning:
        table.add_column("meaning")
    for key, meaning in RATE_MEANINGS.items():
        value = recommendation[key]
        shown = "-" if value is None else f"{value:.3g}"
        table.add_row(key, shown, *([meaning] if with_meaning else []))
    return table


def _print_diagnostics(messages: list[str], console: Console = console) -> None:
    for message in messages:
        console.print(f"[yellow]![/] {escape(message)}", soft_wrap=True)


# The kinds whose one-line constructor the summary shows; the rest are a command away.
SUMMARY_KINDS = ("onecycle", "triangular")


def _print_snippets(schedules: dict[str, Any] | None, console: Console = console) -> None:
    if not schedules:
        return
    from lrfind.core.schedules import KINDS

    console.print("[bold]Paste into your training script:[/]")
    for kind in SUMMARY_KINDS:
        console.print(
            f"  {KINDS[kind].paste_line(schedules[kind])}", soft_wrap=True, highlight=False
        )
    console.print(
        "[dim]More kinds: `lrfind apply RESULT CONFIG --schedule KIND` or "
        "`lrfind run --emit yaml|toml|json|python --schedule KIND`.[/]"
    )


@app.command(cls=_Command)
@with_settings(RunConfig, ("method", "smoothing", "divergence_factor"))
def analyze(
    flags: dict[str, Any],
    csv_file: Annotated[
        Path,
        typer.Argument(
            metavar="CSV_FILE", help="sweep.csv of a run, or any CSV with lr and loss columns."
        ),
    ],
    out: Annotated[
        Path | None,
        Opt("Output folder. \\[default: reanalysed-<method> beside the CSV]", metavar="PATH"),
    ] = None,
    overwrite: Annotated[
        bool, Opt("Replace an existing folder. \\[default: off]", "--overwrite", flag=True)
    ] = False,
) -> None:
    """Re-analyse a saved curve and write sweep.csv, sweep.png and result.json for it."""
    with _reported_errors():
        from lrfind.commands.analyze import analyze_file
        from lrfind.settings.options import resolve_config

        settings = resolve_config(None, flags)
        method = settings.method
        reanalysis = analyze_file(
            csv_file,
            method=method,
            smoothing=settings.smoothing,
            divergence_factor=settings.divergence_factor,
            out=out,
            overwrite=overwrite,
        )
        written = reanalysis.document
        recommendation = written["recommendation"]
        if recommendation is not None:
            table = _rates_table(f"lrfind analyze ({method})", recommendation, with_meaning=False)
            table.add_row("confidence", recommendation["confidence"])
            console.print(table)
            if recommendation["confidence"] != "high":  # a high one's reason is no warning
                _print_diagnostics(recommendation["confidence_reasons"])
        _print_diagnostics(written["diagnostics"])
        if recommendation is not None:
            _print_snippets(recommendation["schedules"])
        console.print(f"Wrote {escape(str(reanalysis.out))}/", soft_wrap=True)
        if recommendation is None:
            _print_no_recommendation(written)
            raise typer.Exit(1)


@app.command(cls=_Command)
def apply(
    result_file: Annotated[
        Path, typer.Argument(metavar="RESULT_FILE", help="result.json of `lrfind run`.")
    ],
    train_config: Annotated[
        Path,
        typer.Argument(
            metavar="TRAIN_CONFIG", help="Training config to write into: YAML, TOML or JSON."
        ),
    ],
    schedule: Annotated[
        str | None,
        Opt(
            f"Schedule kind: {KINDS_TEXT}. \\[default: the config's kind, else {DEFAULT_KIND}]",
            metavar="NAME",
            choices=SCHEDULE_KINDS,
        ),
    ] = None,
    key: Annotated[
        str,
        Opt(
            "Dotted path of the mapping to write, e.g. train.scheduler. \\[default: scheduler]",
            metavar="NAME",
        ),
    ] = "scheduler",
    epochs: Annotated[
        int | None,
        Opt(
            "Training length, to fit whole cycles. \\[default: the config's `epochs`]",
            metavar="INTEGER",
        ),
    ] = None,
    dry_run: Annotated[
        bool, Opt("Show the diff; write nothing. \\[default: off]", "--dry-run", flag=True)
    ] = False,
    force: Annotated[
        bool,
        Opt(
            "Write even if the result was measured on another setup. \\[default: off]",
            "--force",
            flag=True,
        ),
    ] = False,
) -> None:
    """Write a recommended schedule into a training config, keeping its comments and order."""
    with _reported_errors():
        from lrfind.commands.apply import plan_apply

        planned = plan_apply(
            result_file, train_config, schedule=schedule, key=key, epochs=epochs, force=force
        )
        change, shown = planned.change, escape(str(train_config))
        _print_diagnostics(planned.warnings)
        if not change.changed:
            console.print(f"{shown} already holds this {planned.kind} schedule.")
            return
        _print_diff(change.diff())
        if dry_run:
            console.print(f"[yellow]Dry run:[/] {shown} was not changed.")
            return
        change.write()
        rate = f"; its lr into {planned.rate_key}" if planned.rate_key else ""
        console.print(f"Wrote the {planned.kind} schedule into {shown} ({planned.key}{rate}).")


def _print_diff(diff: str) -> None:
    """Every line of a diff whole and byte for byte (tabs, control characters and all; only
    newlines end a line), coloured by its sign on a terminal: a preview shows exactly what
    would be written, so nothing is cut at the terminal's width or rewritten by the printer."""
    colours = {"+": "\x1b[32m", "-": "\x1b[31m", "@": "\x1b[36m"}
    colour = console.is_terminal and not console.no_color
    for line in diff.removesuffix("\n").split("\n"):
        code = "\x1b[1m" if line.startswith(("+++", "---")) else colours.get(line[:1], "")
        shown = f"{code}{line}\x1b[0m" if colour and code else line
        console.file.write(shown + "\n")
    console.file.flush()


@app.command(cls=_Command)
@with_settings(TrainConfig, ("epochs", "result", "seed", "device", "out", "overwrite", "quiet"))
def train(
    flags: dict[str, Any],
    config: Annotated[
        Path | None,
        Opt(
            "Training config (YAML, TOML or JSON); see configs/. \\[default: none]",
            "--config",
            "-c",
            metavar="PATH",
            panel="Model and data",
        ),
    ] = None,
    schedule: Annotated[
        list[str] | None,
        Opt(
            f"Schedule kind: {KINDS_TEXT}. Repeat to compare several. "
            f"\\[default: the config's kind, else {DEFAULT_KIND}]",
            metavar="NAME",
            choices=SCHEDULE_KINDS,
            panel="Recommendation",
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        Opt(
            "Also train a constant-LR baseline at the recommended lr: `constant`. "
            "\\[default: none]",
            metavar="NAME",
            panel="Recommendation",
            choices=("constant",),
        ),
    ] = None,
    force: Annotated[
        bool,
        Opt(
            "Use a result measured on another setup anyway. \\[default: off]",
            "--force",
            flag=True,
            panel="Recommendation",
        ),
    ] = False,
    tensorboard: Annotated[
        Path | None,
        Opt(
            "Also write LR, loss and accuracy as TensorBoard scalars here. \\[default: none]",
            metavar="PATH",
        ),
    ] = None,
) -> None:
    """Train with the recommended schedule(s), and a constant baseline, and compare them."""
    with _reported_errors():
        from lrfind.commands.train import BASELINE
        from lrfind.settings.options import check_choice, load_config_file, merge_options

        if baseline is not None:
            check_choice("baseline", baseline, (BASELINE,))
        file_values = load_config_file(config) if config is not None else None
        settings = merge_options(
            TrainConfig, file_values, flags, str(config) if config else "config file"
        )
        kinds = list(schedule or [])
        if not kinds:
            kinds = [settings.scheduler["kind"] if settings.scheduler else DEFAULT_KIND]
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

    from lrfind.commands.train import run_training

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
        train = "" if record.train_accuracy is None else f", train acc {record.train_accuracy:.4f}"
        test = "" if record.test_accuracy is None else f", test acc {record.test_accuracy:.4f}"
        progress.console.print(
            f"  {escape(name)} epoch {record.epoch}/{settings.epochs}: train loss "
            f"{record.train_loss:.4f}{train}{test}"
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
        accuracies = [record.test_accuracy for record in run.history]
        best = max((value for value in accuracies if value is not None), default=None)
        table.add_row(
            run.name,
            parameters,
            "-" if final.test_accuracy is None else f"{final.test_accuracy:.4f}",
            "-" if best is None else f"{best:.4f}",
            "-" if final.test_loss is None else f"{final.test_loss:.4f}",
            f"{run.seconds:.0f} s",
        )
    console.print(table)
    console.print(
        f"Bounds from {escape(outcome.bounds_source)}. Wrote {escape(str(outcome.out))}/ "
        "(history.csv, history.png, train.json).",
        soft_wrap=True,
    )


@app.command("list", cls=_Command)
def list_specs() -> None:
    """List built-in models and datasets, and the other spec forms."""
    from lrfind.setup.data import BUILTIN_DATASETS
    from lrfind.setup.models import BUILTIN_MODELS

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
    datasets.add_row("torchvision:<Class>", "its own", "--data-dir, else the cache; --download")
    datasets.add_row("folder:PATH", "subfolders", "one subfolder of same-size images per class")
    datasets.add_row(
        "file.py:fn / module:fn", "from the data", "your factory: a map-style or iterable Dataset"
    )
    console.print(datasets)


@app.command(cls=_Command)
def env() -> None:
    """Print versions, devices and where datasets were found, for bug reports."""
    from lrfind.setup.data import BUILTIN_DATASETS, cache_dir, locate
    from lrfind.setup.devices import (
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
    try:
        app()
    finally:
        # Leave the objects torch and matplotlib made at import to the OS instead of having
        # shutdown collect them (docs/speed.md); every file lrfind writes is closed by now.
        gc.freeze()


if __name__ == "__main__":
    main()

"""The ``tuneforge`` command line: thin commands over the same services the API uses.

One module per command group: :mod:`~tuneforge.cli.data` (``data check|clean|split|augment``),
:mod:`~tuneforge.cli.train` (``train``, ``models``, ``pretrain``, ``ensemble``), :mod:`~tuneforge.cli.search`
(``search``, local or on Ray), :mod:`~tuneforge.cli.export` (``export``: transformers or ONNX),
:mod:`~tuneforge.cli.predict` (``evaluate``, ``predict``), :mod:`~tuneforge.cli.chat` (``chat``),
:mod:`~tuneforge.cli.service` (``serve``, ``worker``, ``admin``), :mod:`~tuneforge.cli.solutions`
(``solution ...``), :mod:`~tuneforge.cli.registry` (``registry ...``), :mod:`~tuneforge.cli.retrain` (``retrain``,
``shadow``) and :mod:`~tuneforge.cli.drift` (``drift``); ``data crawl|import`` live in
:mod:`~tuneforge.cli.acquire`. :mod:`~tuneforge.cli.options` holds what they share.

In-process (tests, notebooks)::

    from tuneforge.cli import main
    code = main(["train", "--task", "toy", "--data", "train.jsonl", "-o", "run"])  # 0, 2 for bad input ...

``main`` handles errors exactly as the ``tuneforge`` command does (a short message, no traceback) and returns the
exit code; ``app`` is the typer application itself (for ``typer.testing.CliRunner``).
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from tuneforge.cli import (
    chat,
    data,
    drift,
    explain,
    export,
    federated,
    predict,
    registry,
    retrain,
    search,
    service,
    solutions,
    train,
)
from tuneforge.cli.options import err, out
from tuneforge.errors import ConfigError, DataError, TuneforgeError

__all__ = ["app", "main"]


class _Group(TyperGroup):
    """The root group: ``train`` is built from the training config only when it is used (importing the training
    package takes seconds that ``tuneforge models`` or a usage error should not pay); the listing in ``--help``
    shows its help without building it."""

    _lazy = {"train": train.train_command}
    _after = {"train": "models"}  # where the lazy commands are listed
    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        names = [n for n in super().list_commands(ctx) if n not in self._lazy]
        for name, after in self._after.items():
            names.insert(names.index(after) + 1 if after in names else 0, name)
        return names

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self._lazy and cmd_name not in self.commands:
            if self._listing:
                return typer.core.TyperCommand(cmd_name, help=train.TRAIN_HELP, rich_markup_mode="rich")
            self.commands[cmd_name] = self._lazy[cmd_name]()
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        type(self)._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            type(self)._listing = False


app = typer.Typer(name="tuneforge", cls=_Group, no_args_is_help=True, add_completion=True, rich_markup_mode="rich",
                  help="Fine-tune, evaluate and serve language models on your own data, offline.")


def _show_version(value: bool) -> None:
    if value:
        from tuneforge import __version__

        out.print(f"tuneforge {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                                help="Show the version and exit.")] = False) -> None:
    pass


# the order of `tuneforge --help` (commands, then groups); `train` is listed after `models` (see _Group)
for _command in (train.models, predict.evaluate, predict.predict, chat.chat, train.pretrain, train.ensemble,
                 export.export, search.search):
    app.command()(_command)
app.add_typer(data.app, name="data")
service.register(app)  # serve, worker, admin
solutions.register(app)
app.command(name="explain")(explain.explain)  # explain (integrated gradients)
federated.register(app)  # federated (Flower)
drift.register(app)  # drift (live-input monitoring)
registry.register(app)  # registry list|promote|rollback|alias|delete|history
retrain.register(app)  # retrain, shadow (continual re-training, champion / challenger)


# ------------------------------------------------------------------------------------------------------- main
def _usage_error_types() -> tuple[type[BaseException], ...]:
    """The usage errors of typer's click (typer 0.2x vendors its own copy; older versions use click itself)."""
    found = {c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"}
    try:
        import click

        found.add(click.ClickException)
    except ImportError:  # pragma: no cover - typer without click
        pass
    return tuple(found)


_CLICK_ERRORS = _usage_error_types()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (``argv``: the arguments, default ``sys.argv[1:]``) and return its exit code: 0 done,
    2 bad input or usage (a one-line message, never a traceback), 3 training interrupted (resumable), 130 Ctrl-C.
    """
    if argv is None:
        _tune_gc()
    try:
        if argv is None:  # the program's name as it was started (`tuneforge`, `python -m tuneforge.cli`)
            code = app(standalone_mode=False)
        else:
            code = app(args=list(argv), prog_name="tuneforge", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except SystemExit as e:  # typer's completion options exit by themselves
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    except TuneforgeError as e:
        _report(e)
        return 2
    except _CLICK_ERRORS as e:
        return _usage(e)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            err.print("[red]error:[/] no space left on the device. Free some space and run the command again "
                      "(an interrupted training run continues with --resume).")
        else:
            from rich.markup import escape

            err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err.print("[yellow]aborted[/]")
        return 1


def _usage(e: Any) -> int:
    """A click usage error as one line (bare ``tuneforge`` prints the help instead)."""
    from rich.markup import escape

    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError":  # a group without its command: the help (typer prints it) and 2
        text = e.format_message()
        if text.strip():
            out.print(text, markup=False, highlight=False, soft_wrap=True)
        return 2
    code = getattr(e, "exit_code", 1)
    message = " ".join(e.format_message().split())
    if ctx is not None and code == 2:
        names: list[str] = []  # the command's path without the program's name (which is `python -m ...` there)
        while ctx.parent is not None:
            names.insert(0, ctx.info_name)
            ctx = ctx.parent
        message = f"{message.rstrip('.')}; see `{' '.join(['tuneforge', *names, '--help'])}`"
    kind = "usage error" if code == 2 else "error"
    err.print(f"[red]{kind}:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return code


def _report(e: TuneforgeError) -> None:
    from rich.markup import escape

    kind = "data error" if isinstance(e, DataError) else "configuration error" if isinstance(e, ConfigError) \
        else "error"
    # soft_wrap: the terminal wraps; no line breaks inside a path or a message that a log or grep would split
    err.print(f"[red]{kind}:[/] {escape(e.message)}", highlight=False, soft_wrap=True)
    if e.hint:
        err.print(f"[yellow]what to do:[/] {escape(e.hint)}", highlight=False, soft_wrap=True)


def _tune_gc() -> None:
    """Python's cyclic collector for a process that imports torch and transformers.

    Importing them allocates millions of long-lived objects, and with the default thresholds the collector walks
    them all again and again: about a second of a `tuneforge train` start-up. A larger first-generation threshold
    makes collections rarer (cycles are still collected), and at exit the objects still alive are frozen, so the
    interpreter's final collection skips them (about 1.3 s of tear-down otherwise; atexit handlers, open files and
    threads are finalised as usual)."""
    import atexit
    import gc

    gc.set_threshold(100_000, 50, 100)
    atexit.register(gc.freeze)

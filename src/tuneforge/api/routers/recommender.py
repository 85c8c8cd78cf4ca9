"""/v1/solutions/recommender: API routes of :mod:`tuneforge.solutions.recommender`.

Registering and deleting a recommender needs the ``train`` scope; posting interactions, recommending and finding
similar items need ``predict``. Another tenant's recommender is a 404, like a missing one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from tuneforge.api.deps import CurrentPrincipal, PredictPrincipal, SessionDep, StateDep, TrainPrincipal
from tuneforge.api.schemas import ListPublic
from tuneforge.solutions.recommender import service
from tuneforge.store.solution_tables.recommender import Recommender as RecommenderRow

router = APIRouter(prefix="/v1/solutions/recommender", tags=["solutions"])


class RecommenderCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="A name to show in lists.")
    bundle: str = Field(min_length=1, max_length=255, description=(
        "The name of a bundle folder in the tenant's import folder (<data_dir>/imports/<tenant id>), as "
        "written by `tuneforge solution recommender train --output`."))


class RecommenderPublic(BaseModel):
    id: str
    object: Literal["solution.recommender"] = "solution.recommender"
    name: str
    created_at: int
    summary: dict[str, Any]

    @classmethod
    def of(cls, row: RecommenderRow) -> RecommenderPublic:
        return cls(id=row.id, name=row.name, created_at=int(row.created_at.timestamp()), summary=row.summary)


class EventIn(BaseModel):
    user: str = Field(min_length=1, max_length=255)
    item: str = Field(min_length=1, max_length=255)
    rating: float | None = Field(None, description="Optional; below the recommender's like threshold it is seen, "
                                                   "not liked. Without a rating the event is a like.")


class EventsCreate(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventsPublic(BaseModel):
    object: Literal["solution.recommender.events"] = "solution.recommender.events"
    added: int


class BecausePublic(BaseModel):
    item_id: str
    title: str
    similarity: float


class RecommendationPublic(BaseModel):
    item_id: str
    title: str
    score: float
    because: list[BecausePublic]
    explanation: str


class SimilarPublic(BaseModel):
    item_id: str
    title: str
    score: float
    text_similarity: float
    knn_similarity: float


class Deleted(BaseModel):
    id: str
    object: Literal["solution.recommender"] = "solution.recommender"
    deleted: bool = True


def _cache(request: Request) -> service.RecommenderCache:
    cache = getattr(request.app.state, "solution_recommenders", None)
    if cache is None:
        cache = service.RecommenderCache()
        request.app.state.solution_recommenders = cache
    return cache


K = Annotated[int, Query(ge=1, le=100, description="How many items.")]


@router.post("", response_model=RecommenderPublic, summary="Register a recommender bundle")
def create(body: RecommenderCreate, principal: TrainPrincipal, session: SessionDep,
           state: StateDep) -> RecommenderPublic:
    row = service.register_recommender(session, tenant_id=principal.tenant_id, storage=state.storage,
                                       data_dir=state.settings.data_dir, name=body.name, bundle=body.bundle)
    return RecommenderPublic.of(row)


@router.get("", response_model=ListPublic, summary="List recommenders")
def list_recommenders(principal: CurrentPrincipal, session: SessionDep) -> ListPublic:
    page = service.RecommenderRepo(session, principal.tenant_id).list(limit=100)
    return ListPublic.of([RecommenderPublic.of(r) for r in page.data], page.has_more)


@router.get("/{recommender_id}", response_model=RecommenderPublic, summary="Retrieve a recommender")
def retrieve(recommender_id: str, principal: CurrentPrincipal, session: SessionDep) -> RecommenderPublic:
    row = service.RecommenderRepo(session, principal.tenant_id).get(recommender_id)
    public = RecommenderPublic.of(row)
    public.summary = {**public.summary, "events": service.EventRepo(session, principal.tenant_id).count_for(row.id)}
    return public


@router.delete("/{recommender_id}", response_model=Deleted, summary="Delete a recommender and its events")
def delete(recommender_id: str, request: Request, principal: TrainPrincipal, session: SessionDep,
           state: StateDep) -> Deleted:
    row = service.delete_recommender(session, tenant_id=principal.tenant_id, storage=state.storage,
                                     recommender_id=recommender_id, cache=_cache(request))
    return Deleted(id=row.id)


@router.post("/{recommender_id}/interactions", response_model=EventsPublic, summary="Record interactions")
def add_interactions(recommender_id: str, body: EventsCreate, request: Request, principal: PredictPrincipal,
                     session: SessionDep, state: StateDep) -> EventsPublic:
    """New events join the user's history at the next recommendation (no retraining needed)."""
    n = service.add_events(session, tenant_id=principal.tenant_id, storage=state.storage,
                           recommender_id=recommender_id, cache=_cache(request),
                           events=[(e.user, e.item, e.rating) for e in body.events])
    return EventsPublic(added=n)


@router.get("/{recommender_id}/recommend", response_model=ListPublic, summary="Recommend items for a user")
def recommend(recommender_id: str, request: Request, principal: PredictPrincipal, session: SessionDep,
              state: StateDep, user: Annotated[str, Query(min_length=1, max_length=255)], k: K = 10) -> ListPublic:
    """The top-k items the user has not seen, each with the history items that explain it. A user with no
    history gets the most popular items."""
    recs = service.recommend(session, tenant_id=principal.tenant_id, storage=state.storage,
                             recommender_id=recommender_id, user=user, k=k, cache=_cache(request))
    return ListPublic(data=[RecommendationPublic(item_id=r.item_id, title=r.title, score=r.score,
                                                 because=[BecausePublic(**vars(b)) for b in r.because],
                                                 explanation=r.explanation) for r in recs])


@router.get("/{recommender_id}/similar", response_model=ListPublic, summary="Items similar to an item")
def similar(recommender_id: str, request: Request, principal: PredictPrincipal, session: SessionDep,
            state: StateDep, item: Annotated[str, Query(min_length=1, max_length=255)], k: K = 10) -> ListPublic:
    sims = service.similar(session, tenant_id=principal.tenant_id, storage=state.storage,
                           recommender_id=recommender_id, item=item, k=k, cache=_cache(request))
    return ListPublic(data=[SimilarPublic(**vars(s)) for s in sims])

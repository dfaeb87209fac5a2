"""Request bodies of the JSON API (pydantic): wrong types, unknown fields and non-finite numbers are 422 before
any model call; what only the predictors can judge (a point outside the image, a reversed box) they judge."""

from typing import List, Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, create_model

from ssseg.samv2.batch.amgjob import GENERATOR_OPTIONS


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OpenPath(Body):
    """``POST /api/sessions`` with JSON: a file or a folder of frames relative to ``--data-root``."""

    path: str = Field(min_length=1)


class Prompt(Body):
    """``POST /api/sessions/{id}/prompts``: clicks and / or a box for one object on one frame."""

    frame: int = Field(0, ge=0)
    object_id: int = Field(ge=1, le=255, description="1..255: the object's palette index in DAVIS exports")
    points: List[Tuple[float, float]] = Field(default_factory=list, description="N x 2 (x, y) pixels")
    labels: List[int] = Field(default_factory=list, description="N labels: 1 foreground, 0 background")
    box: Optional[Tuple[float, float, float, float]] = Field(None, description="x0, y0, x1, y1 pixels")
    clear_old: bool = True
    multimask: bool = False


class Propagate(Body):
    """``POST /api/sessions/{id}/propagate``."""

    start_frame: Optional[int] = Field(None, ge=0)
    direction: Literal["both", "forward", "backward"] = "both"
    max_frames: Optional[int] = Field(None, ge=0)


class ObjectName(Body):
    """``PATCH /api/sessions/{id}/objects/{k}``."""

    name: str = Field(max_length=200)


# ``POST /api/sessions/{id}/everything``: the automatic generator's options, with the `amg` subcommand's defaults
Everything = create_model(
    "Everything",
    __base__=Body,
    use_m2m=(bool, False),
    **{name: (kind, default) for name, (kind, default, _) in GENERATOR_OPTIONS.items()},
)

"""Typed sessions and their store: a cap on how many are open (``--max-sessions``) and expiry of idle ones
(``--session-ttl``).

A session is one image or one video a person labels. Each owns a folder (its upload or extracted frames), its
predictor state and the results seen so far, and an ``asyncio.Lock`` that orders its model calls. A running
propagation marks the session busy: other changes to it are answered 409 until it ends, while reads (frames,
masks, the session itself) go on.
"""

import asyncio
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from ssseg.samv2.server.errors import APIError

Entry = Dict[str, Any]  # one object's JSON result: object_id, mask (COCO RLE), score, bbox, area


@dataclass
class ImageObject:
    """One object of an image session: its prompts, the low-res logits fed back on the next click, its result."""

    object_id: int
    points: List[List[float]] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    box: Optional[List[float]] = None
    logits: Optional[np.ndarray] = None  # h x w low-resolution logits of the chosen mask (mask input next time)
    entry: Optional[Entry] = None


@dataclass
class FramePrompt:
    """The prompts of one object on one video frame, as the predictor holds them."""

    points: List[List[float]] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    box: Optional[List[float]] = None


@dataclass
class Propagation:
    """A running propagation: the task that drives it and the flag that stops it between two frames."""

    cancel: threading.Event = field(default_factory=threading.Event)
    task: Optional[asyncio.Task] = None


@dataclass
class Session:
    session_id: str
    kind: str  # "image" or "video"
    name: str
    folder: str
    width: int
    height: int
    num_frames: int
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    names: Dict[int, str] = field(default_factory=dict)  # object id -> name given by the user
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    propagation: Optional[Propagation] = None
    closed: bool = False

    @property
    def propagating(self) -> bool:
        return self.propagation is not None

    def object_ids(self) -> List[int]:
        raise NotImplementedError

    def prompts(self) -> List[Dict[str, Any]]:
        """``[{"object_id", "name", "prompts": [{"frame", "points", "labels", "box"}]}]`` in id order."""
        raise NotImplementedError

    def frame_entries(self, frame: int) -> List[Entry]:
        """The latest known masks on ``frame`` (objects without one there are absent)."""
        raise NotImplementedError

    def close(self) -> None:
        """Free the predictor state; the folder is removed by the store."""

    def summary(self) -> Dict[str, Any]:
        return {
            "session_id": self.session_id,
            "kind": self.kind,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "objects": self.object_ids(),
            "propagating": self.propagating,
            "created": self.created,
            "last_used": self.last_used,
        }


@dataclass
class ImageSession(Session):
    image: Optional[np.ndarray] = None  # H x W x 3 uint8 RGB, kept for "everything" and the frame JPEG
    jpeg: Optional[bytes] = None  # the image as JPEG, encoded on the first request
    predictor: Any = None  # SAMV2ImagePredictor with this image set
    objects: Dict[int, ImageObject] = field(default_factory=dict)

    def object_ids(self) -> List[int]:
        return sorted(self.objects)

    def prompts(self) -> List[Dict[str, Any]]:
        result = []
        for k in sorted(self.objects):
            obj = self.objects[k]
            prompt = {"frame": 0, "points": obj.points, "labels": obj.labels, "box": obj.box}
            has_prompt = bool(obj.points) or obj.box is not None
            result.append({"object_id": k, "name": self.names.get(k), "prompts": [prompt] if has_prompt else []})
        return result

    def frame_entries(self, frame: int) -> List[Entry]:
        # one snapshot of the items: the model thread may change the dict meanwhile
        objects = sorted(list(self.objects.items()))
        return [obj.entry for _, obj in objects if obj.entry is not None]

    def close(self) -> None:
        self.predictor = None
        self.image = None
        self.objects.clear()


@dataclass
class VideoSession(Session):
    state: Any = None  # VideoInferenceState of the shared SAMV2VideoPredictor
    frame_prompts: Dict[int, Dict[int, FramePrompt]] = field(default_factory=dict)  # object -> frame -> prompt
    results: Dict[int, Dict[int, Entry]] = field(default_factory=dict)  # frame -> object -> entry
    index_pngs: Dict[int, bytes] = field(default_factory=dict)  # frame -> DAVIS palette PNG (object id per pixel)

    def object_ids(self) -> List[int]:
        return sorted(int(k) for k in self.state.obj_ids) if self.state is not None else []

    def prompts(self) -> List[Dict[str, Any]]:
        result = []
        for k in self.object_ids():
            frames = self.frame_prompts.get(k, {})
            prompts = [
                {"frame": t, "points": p.points, "labels": p.labels, "box": p.box} for t, p in sorted(frames.items())
            ]
            result.append({"object_id": k, "name": self.names.get(k), "prompts": prompts})
        return result

    def frame_entries(self, frame: int) -> List[Entry]:
        entries = list(self.results.get(frame, {}).items())  # a snapshot, as above
        return [entry for _, entry in sorted(entries)]

    def close(self) -> None:
        if self.state is not None:
            self.state.close()
            self.state = None
        self.results.clear()
        self.index_pngs.clear()


class SessionStore:
    """Open sessions by id, at most ``max_sessions``; those idle for longer than ``ttl`` seconds expire.

    Used from the event loop only (no locking needed); closing a session's state goes through ``closer`` so that
    it runs after the model calls already queued for it.
    """

    def __init__(self, max_sessions: int, ttl: float) -> None:
        self.max_sessions = max_sessions
        self.ttl = ttl
        self.sessions: Dict[str, Session] = {}
        self.pending = 0  # sessions being opened (upload, decoding): they count against the cap

    def __len__(self) -> int:
        return len(self.sessions)

    def expired(self, now: Optional[float] = None) -> List[Session]:
        """Remove and return the sessions idle for longer than the TTL (a running propagation is not idle)."""
        now = time.time() if now is None else now
        old = [s for s in self.sessions.values() if not s.propagating and now - s.last_used > self.ttl]
        for session in old:
            del self.sessions[session.session_id]
        return old

    def reserve(self) -> None:
        """Count a session being opened; 503 when the server is full."""
        if len(self.sessions) + self.pending >= self.max_sessions:
            raise APIError(
                503,
                f"too many sessions: {self.max_sessions} are open (--max-sessions); delete one "
                "(DELETE /api/sessions/{id}) or wait for idle ones to expire",
            )
        self.pending += 1

    def release(self) -> None:
        self.pending -= 1

    def add(self, session: Session) -> None:
        self.sessions[session.session_id] = session

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            raise APIError(404, f"unknown session '{session_id}' (it may have expired or been deleted)")
        session.last_used = time.time()
        return session

    def pop(self, session_id: str) -> Session:
        session = self.get(session_id)
        del self.sessions[session_id]
        return session

    def all(self) -> List[Session]:
        return sorted(self.sessions.values(), key=lambda s: s.created)


def new_session_id() -> str:
    return uuid.uuid4().hex[:16]


def remove_folder(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)

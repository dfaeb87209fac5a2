"""``POST /api/sessions/{id}/propagate``: tracking streamed as newline-delimited JSON.

A producer task advances ``propagateinvideo`` one frame per model call (so other sessions' calls get the model
between two frames), keeps each frame's result in the session and queues it; the response streams the queue. The
producer checks the session's cancel flag before every frame; the flag is set by ``POST .../cancel``, by deleting
the session, and when the response ends early because the client went away. The producer owns the session's
"propagating" mark and always clears it, even if the response never started.
"""

import asyncio
import json
import logging
import time
from typing import Any, AsyncIterator, Dict, Optional

from ssseg.samv2.server.engine import record_frame
from ssseg.samv2.server.errors import APIError, error_body
from ssseg.samv2.server.schemas import Propagate
from ssseg.samv2.server.sessions import Propagation, VideoSession

logger = logging.getLogger("ssseg.samv2.server")
START_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)  # propagateinvideo checks its arguments eagerly


def _next(generator):
    return next(generator, None)


def _close(generator) -> None:
    generator.close()


async def start(session: VideoSession, predictor, runner, body: Propagate):
    """Claim the session, check the arguments with the predictor and start the producer; returns the response."""
    from starlette.responses import StreamingResponse

    if session.propagating:
        raise APIError(409, f"a propagation is already running in session '{session.session_id}'")
    if body.start_frame is not None and body.start_frame >= session.num_frames:
        raise APIError(404, f"frame {body.start_frame} does not exist: the video has {session.num_frames} frames (0..)")
    propagation = Propagation()
    session.propagation = propagation  # claimed before the first await: a second request now gets 409
    reverse = body.direction == "backward"
    try:
        async with session.lock:
            if session.closed:
                raise APIError(404, f"unknown session '{session.session_id}' (it was deleted)")
            try:
                first = await runner(
                    predictor.propagateinvideo, session.state, body.start_frame, body.max_frames, reverse
                )
            except START_ERRORS as error:
                raise APIError(400, f"cannot propagate: {error}") from None
    except BaseException:
        session.propagation = None
        raise
    queue: asyncio.Queue = asyncio.Queue()
    propagation.task = asyncio.create_task(_produce(session, predictor, runner, body, first, propagation, queue))
    return StreamingResponse(_stream(queue, propagation), media_type="application/x-ndjson")


async def _run_pass(session, runner, generator, propagation, queue, seen) -> Optional[int]:
    """Track one direction; returns the first frame it yielded (None if none). Stops between frames on cancel."""
    first = None
    try:
        while not propagation.cancel.is_set():
            async with session.lock:
                item = await runner(_next, generator)
            if item is None:
                break
            frame, obj_ids, logits = item
            first = frame if first is None else first
            entries = await asyncio.to_thread(record_frame, session, frame, obj_ids, logits)
            if frame not in seen:  # the start frame comes again at the head of the backward pass
                seen.add(frame)
                queue.put_nowait({"frame": frame, "objects": entries})
    finally:
        await runner(_close, generator)
    return first


async def _produce(session, predictor, runner, body: Propagate, generator, propagation, queue) -> None:
    seen: set = set()
    try:
        first = await _run_pass(session, runner, generator, propagation, queue, seen)
        if body.direction == "both" and first is not None and not propagation.cancel.is_set():
            start = body.start_frame if body.start_frame is not None else first
            backward = await runner(predictor.propagateinvideo, session.state, start, body.max_frames, True)
            await _run_pass(session, runner, backward, propagation, queue, seen)
        cancelled = propagation.cancel.is_set()
        queue.put_nowait({"done": True, "frames": len(seen), "cancelled": cancelled})
    except Exception as error:  # the stream has started: the error becomes its last line
        logger.exception("propagation failed in session %s", session.session_id)
        message = f"propagation stopped after {len(seen)} frames: {type(error).__name__}: {error}"
        queue.put_nowait(error_body(500, message))
    finally:
        session.propagation = None
        session.last_used = time.time()  # a long propagation is activity: the TTL counts from its end
        queue.put_nowait(None)


async def _stream(queue: asyncio.Queue, propagation: Propagation) -> AsyncIterator[bytes]:
    try:
        while True:
            item: Optional[Dict[str, Any]] = await queue.get()
            if item is None:
                return
            yield (json.dumps(item, separators=(",", ":")) + "\n").encode()
    finally:
        propagation.cancel.set()  # the client went away (or the stream ended): stop tracking


async def stop(propagation: Optional[Propagation], timeout: float = 30.0) -> None:
    """Cancel a propagation and wait (bounded) until its producer has finished the frame it is computing."""
    if propagation is None:
        return
    propagation.cancel.set()
    if propagation.task is not None and not propagation.task.done():
        await asyncio.wait([propagation.task], timeout=timeout)

"""The FastAPI application of ``ssseg-samv2 serve``: the JSON API under ``/api`` and the web page at ``/``.

:func:`create_app` takes an already built model, shared by every session: image sessions each wrap it in their own
:class:`SAMV2ImagePredictor` (the image embedding is per session), video sessions share one
:class:`SAMV2VideoPredictor` (the state is per session), "everything" builds a
:class:`SAMV2AutomaticMaskGenerator` per request. Model calls run on one worker thread (:class:`ModelRunner`), never
on the event loop; decoding, JPEG encoding and exports run on the default thread pool. The reference is
docs/server.md.
"""

import asyncio
import contextlib
import hmac
import io
import json
import os
import shutil
import tempfile
from typing import Optional

from ssseg.modules.utils.optional import import_optional

import_optional("fastapi", "serve", "ssseg-samv2 serve")  # before anything imports pydantic / starlette
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import FileResponse, JSONResponse, Response  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402

from ssseg.samv2.server import engine, export, tracking, uploads  # noqa: E402
from ssseg.samv2.server.errors import APIError, error_response, install_error_handlers, validation_message  # noqa: E402
from ssseg.samv2.server.schemas import Everything, ObjectName, OpenPath, Prompt, Propagate  # noqa: E402
from ssseg.samv2.server.sessions import (  # noqa: E402
    ImageSession,
    Session,
    SessionStore,
    VideoSession,
    new_session_id,
    remove_folder,
)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


class TokenMiddleware:
    """Every ``/api`` request needs ``Authorization: Bearer TOKEN`` (the page and its files do not)."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api"):
            given = dict(scope["headers"]).get(b"authorization")
            if given is None or not hmac.compare_digest(given, self.expected):
                what = "missing" if given is None else "wrong"
                response = error_response(
                    401,
                    f"{what} token: send the header 'Authorization: Bearer TOKEN' with the server's --token",
                    {"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    model,
    *,
    model_name: str = "custom",
    data_root: Optional[str] = None,
    token: Optional[str] = None,
    max_upload_mb: float = 1024,
    session_ttl: float = 3600,
    max_sessions: int = 8,
    workdir: Optional[str] = None,
    dtype: str = "float32",
) -> "FastAPI":
    """The API and page around a built SAMV2 ``model`` (shared, never moved or changed).

    Args:
        model_name: what ``/api/health`` reports.
        data_root: the folder sessions may open by relative path (None: uploads only).
        token: when set, every ``/api`` request needs ``Authorization: Bearer <token>``.
        max_upload_mb: largest upload (and largest extracted zip), enforced while streaming.
        session_ttl: seconds after which an idle session is closed.
        max_sessions: most open sessions; one more is 503.
        workdir: where uploads and spilled video state go (default: a new temporary folder, removed at shutdown).
        dtype: compute dtype of model calls (float32, bfloat16, float16).
    """
    from ssseg.modules.models.segmentors.samv2 import SAMV2VideoPredictor

    if max_sessions < 1:
        raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
    if not max_upload_mb > 0 or not session_ttl > 0:
        raise ValueError("max_upload_mb and session_ttl must be > 0")
    if data_root is not None and not os.path.isdir(data_root):
        raise ValueError(f"data_root '{data_root}' is not a folder")
    own_workdir = workdir is None
    workdir = tempfile.mkdtemp(prefix="ssseg-serve-") if own_workdir else workdir
    os.makedirs(workdir, exist_ok=True)
    max_bytes = int(max_upload_mb * 2**20)
    device = str(next(model.parameters()).device)
    runner = engine.ModelRunner(device=device, dtype=dtype)
    video_predictor = SAMV2VideoPredictor(model=model, device=None, spill_dir=workdir)
    store = SessionStore(max_sessions=max_sessions, ttl=session_ttl)

    async def close_session(session: Session) -> None:
        session.closed = True
        await tracking.stop(session.propagation)
        async with session.lock:
            await runner(session.close)  # after the model calls already queued for it
        await asyncio.to_thread(remove_folder, session.folder)

    closing = set()  # the tasks closing expired sessions (referenced, so that they are not garbage collected)

    def sweep() -> None:
        for session in store.expired():
            task = asyncio.create_task(close_session(session))
            closing.add(task)
            task.add_done_callback(closing.discard)

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(max(0.5, min(60.0, session_ttl / 4)))
            sweep()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        os.makedirs(workdir, exist_ok=True)  # again, if the app is started a second time
        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            for session in list(store.sessions.values()):
                store.sessions.pop(session.session_id, None)
                with contextlib.suppress(Exception):
                    await close_session(session)
            runner.shutdown()
            if own_workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    app = FastAPI(
        title="ssseg-samv2 serve",
        description="Interactive SAM 2 labelling of images and videos. Errors: "
        '{"error": {"status": <int>, "message": <str>}}. Reference: docs/server.md.',
        lifespan=lifespan,
    )
    install_error_handlers(app)
    if token:
        app.add_middleware(TokenMiddleware, token=token)
    app.state.store = store
    app.state.runner = runner

    def get_session(session_id: str, kind: Optional[str] = None) -> Session:
        sweep()
        session = store.get(session_id)
        if kind is not None and session.kind != kind:
            raise APIError(400, f"this works on {kind} sessions; session '{session_id}' is a {session.kind}")
        return session

    def check_frame(session: Session, frame: int) -> None:
        if not 0 <= frame < session.num_frames:
            last = session.num_frames - 1
            what = "an image has one frame (0)" if session.kind == "image" else f"the video has frames 0..{last}"
            raise APIError(404, f"frame {frame} does not exist: {what}")

    def check_object(session: Session, object_id: int) -> None:
        if object_id not in session.object_ids():
            known = session.object_ids()
            raise APIError(
                404, f"object {object_id} does not exist in session '{session.session_id}' (objects: {known})"
            )

    async def locked(session: Session, fn, *args):
        """A model call that changes the session: 409 while it propagates, 404 once it is deleted."""

        def busy():
            return APIError(409, f"a propagation is running in session '{session.session_id}'; cancel it or wait")

        if session.propagating:
            raise busy()
        async with session.lock:
            if session.closed:
                raise APIError(404, f"unknown session '{session.session_id}' (it was deleted)")
            if session.propagating:
                raise busy()
            return await runner(fn, *args)

    # -------------------------------------------------------------------------------------------- server
    @app.get("/api/health")
    async def health():
        return {
            "status": "ok",
            "model": model_name,
            "device": device,
            "auth": bool(token),
            "data_root": data_root is not None,
            "max_upload_mb": max_upload_mb,
            "sessions": len(store),
            "max_sessions": max_sessions,
        }

    @app.get("/api/files")
    async def files(dir: str = ""):
        return await asyncio.to_thread(uploads.list_data_dir, data_root, dir)

    # -------------------------------------------------------------------------------------------- sessions
    async def open_source(request: Request, folder: str):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            return await uploads.receive_upload(request, folder, max_bytes)
        if content_type in ("application/json", ""):
            raw = await request.body()
            try:
                data = json.loads(raw)
            except ValueError as error:
                raise APIError(400, f"malformed JSON body: {error}") from None
            from pydantic import ValidationError

            try:
                body = OpenPath.model_validate(data)
            except ValidationError as error:
                raise APIError(422, validation_message(error.errors(include_url=False))) from None
            return body.path, uploads.resolve_data_path(data_root, body.path)
        raise APIError(
            415,
            f"unsupported Content-Type '{content_type}': upload multipart/form-data with a 'file' field, or "
            'send JSON {"path": "..."} relative to --data-root',
        )

    @app.post("/api/sessions", status_code=201)
    async def create_session(request: Request):
        sweep()
        store.reserve()
        folder = tempfile.mkdtemp(prefix="session-", dir=workdir)
        try:
            name, path = await open_source(request, folder)
            kind = await asyncio.to_thread(uploads.sniff, path, name)
            if kind == "zip":
                path = await asyncio.to_thread(uploads.extract_zip, path, folder, max_bytes, name)
            common = dict(session_id=new_session_id(), name=os.path.basename(name.rstrip("/")) or name, folder=folder)
            if kind == "image":
                image = await asyncio.to_thread(uploads.load_image, path, name)
                height, width = image.shape[:2]
                session = ImageSession(kind="image", width=width, height=height, num_frames=1, **common)
                await runner(engine.open_image, session, model, image)
            else:
                session = VideoSession(kind="video", width=0, height=0, num_frames=0, **common)
                await runner(engine.open_video, session, video_predictor, path)
        except BaseException:
            await asyncio.to_thread(remove_folder, folder)
            raise
        finally:
            store.release()
        store.add(session)
        return JSONResponse(session.summary(), status_code=201)

    @app.get("/api/sessions")
    async def list_sessions():
        sweep()
        return {"sessions": [s.summary() for s in store.all()]}

    @app.get("/api/sessions/{session_id}")
    async def get_session_details(session_id: str):
        session = get_session(session_id)
        return {**session.summary(), "objects": session.prompts()}

    @app.delete("/api/sessions/{session_id}", status_code=204)
    async def delete_session(session_id: str):
        sweep()
        session = store.pop(session_id)
        await close_session(session)
        return Response(status_code=204)

    # -------------------------------------------------------------------------------------------- frames
    @app.get("/api/sessions/{session_id}/frames/{frame}", response_class=Response)
    async def get_frame(session_id: str, frame: int):
        session = get_session(session_id)
        check_frame(session, frame)

        def encode() -> bytes:
            from PIL import Image

            if isinstance(session, ImageSession):
                if session.jpeg is None:
                    session.jpeg = _jpeg(Image.fromarray(session.image))
                return session.jpeg
            return _jpeg(Image.fromarray(session.state.frames.frame_rgb(frame)))

        data = await asyncio.to_thread(encode)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/sessions/{session_id}/frames/{frame}/masks")
    async def get_masks(session_id: str, frame: int):
        session = get_session(session_id)
        check_frame(session, frame)
        return {"frame": frame, "objects": session.frame_entries(frame)}

    # -------------------------------------------------------------------------------------------- prompts
    @app.post("/api/sessions/{session_id}/prompts")
    async def add_prompt(session_id: str, body: Prompt):
        session = get_session(session_id)
        check_frame(session, body.frame)
        if isinstance(session, ImageSession):
            return await locked(session, engine.image_prompt, session, body)
        return await locked(session, engine.video_prompt, session, video_predictor, body)

    @app.patch("/api/sessions/{session_id}/objects/{object_id}")
    async def name_object(session_id: str, object_id: int, body: ObjectName):
        session = get_session(session_id)
        if not 1 <= object_id <= 255:
            raise APIError(404, f"object {object_id} cannot exist: object ids are 1..255")
        session.names[object_id] = body.name
        return {"object_id": object_id, "name": body.name}

    @app.delete("/api/sessions/{session_id}/objects/{object_id}", status_code=204)
    async def delete_object(session_id: str, object_id: int):
        session = get_session(session_id)
        check_object(session, object_id)
        if isinstance(session, ImageSession):
            await locked(session, session.objects.pop, object_id)
            session.names.pop(object_id, None)
        else:
            await locked(session, engine.video_remove, session, video_predictor, object_id)
        return Response(status_code=204)

    @app.delete("/api/sessions/{session_id}/frames/{frame}/prompts")
    async def clear_prompts(session_id: str, frame: int, object_id: Optional[int] = None):
        session = get_session(session_id)
        check_frame(session, frame)
        if object_id is not None:
            check_object(session, object_id)
        if isinstance(session, ImageSession):
            return await locked(session, engine.image_clear, session, object_id)
        return await locked(session, engine.video_clear, session, video_predictor, frame, object_id)

    # -------------------------------------------------------------------------------------------- tracking
    @app.post("/api/sessions/{session_id}/propagate")
    async def propagate(session_id: str, body: Optional[Propagate] = None):
        session = get_session(session_id, "video")
        return await tracking.start(session, video_predictor, runner, body or Propagate())

    @app.post("/api/sessions/{session_id}/cancel")
    async def cancel(session_id: str):
        session = get_session(session_id)
        propagation = session.propagation
        if propagation is not None:
            propagation.cancel.set()
        return {"cancelled": propagation is not None}

    # -------------------------------------------------------------------------------------------- images
    @app.post("/api/sessions/{session_id}/everything")
    async def segment_everything(session_id: str, body: Optional[Everything] = None):
        session = get_session(session_id, "image")
        options = (body or Everything()).model_dump()
        return await locked(session, engine.everything, session, model, options)

    # -------------------------------------------------------------------------------------------- export
    @app.get("/api/sessions/{session_id}/export")
    async def export_session(session_id: str, format: str = "coco"):
        session = get_session(session_id)
        if format not in export.FORMATS:
            raise APIError(400, f"unknown export format '{format}'; expected one of {', '.join(export.FORMATS)}")
        name = export.export_name(session)
        if format == "coco":
            data = await asyncio.to_thread(export.coco, session)
            headers = {"Content-Disposition": f'attachment; filename="{name}_coco.json"'}
            return JSONResponse(data, headers=headers)
        data = await asyncio.to_thread(export.davis, session)
        headers = {"Content-Disposition": f'attachment; filename="{name}_davis.zip"'}
        return Response(data, media_type="application/zip", headers=headers)

    # -------------------------------------------------------------------------------------------- the page
    @app.get("/", include_in_schema=False)
    async def page():
        index = os.path.join(STATIC_DIR, "index.html")
        if not os.path.isfile(index):
            raise APIError(404, "the web page is not installed (ssseg/samv2/server/static/index.html is missing)")
        return FileResponse(index, media_type="text/html")

    if os.path.isdir(STATIC_DIR):
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()

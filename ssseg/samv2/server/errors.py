"""The one error shape of the JSON API, ``{"error": {"status": 404, "message": "..."}}``, and the handlers that map
every failure to it: the server's own :class:`APIError`, Starlette's HTTP errors (unknown route, wrong method),
FastAPI's request validation (malformed JSON -> 400, a body of the wrong shape -> 422) and, last, any unexpected
exception (500, logged with its traceback on the server; the client only gets one line)."""

import logging
import re
from typing import Any, Dict, Optional

logger = logging.getLogger("ssseg.samv2.server")


class APIError(Exception):
    """A request the server refuses: answered with ``status`` and ``message`` in the JSON error shape."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def one_line(message: str) -> str:
    """``message`` with control characters escaped (``\\n``): messages quote client-given names (paths, file and zip
    entry names), and an error message is always one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda match: repr(match.group())[1:-1], message)


def error_body(status: int, message: str) -> Dict[str, Any]:
    return {"error": {"status": status, "message": one_line(message)}}


def error_response(status: int, message: str, headers: Optional[Dict[str, str]] = None):
    from starlette.responses import JSONResponse

    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def validation_message(errors) -> str:
    """FastAPI / pydantic validation errors as one line: ``body.points.0: Input should be a valid list; ...``."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app) -> None:
    """Map every exception to the JSON error shape; no traceback ever reaches a client."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def on_api_error(request, error: APIError):
        return error_response(error.status, error.message, error.headers)

    async def on_http_error(request, error: HTTPException):
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif error.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(error.status_code, message, getattr(error, "headers", None))

    async def on_validation_error(request, error: RequestValidationError):
        errors = error.errors()
        invalid_json = [e for e in errors if e.get("type") == "json_invalid"]
        if invalid_json:
            detail = invalid_json[0].get("ctx", {}).get("error", "cannot parse it")
            return error_response(400, f"malformed JSON body: {detail}")
        return error_response(422, validation_message(errors))

    async def on_unexpected(request, error: Exception):
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(error).__name__}); the server log has the details")

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)

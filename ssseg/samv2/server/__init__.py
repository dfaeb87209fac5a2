"""``ssseg-samv2 serve``: the interactive labelling web app and its JSON API (docs/server.md).

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart); a missing one is a one-line error naming it.
"""

from ssseg.modules.utils.optional import import_optional

for _module in ("fastapi", "multipart"):  # before the modules below import pydantic / starlette
    import_optional(_module, "serve", "ssseg-samv2 serve")

from ssseg.samv2.server.app import create_app  # noqa: E402

__all__ = ["create_app"]

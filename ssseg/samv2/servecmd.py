"""``ssseg-samv2 serve``: the interactive labelling web app and its JSON API, on uvicorn, until Ctrl-C.

The model is built once (``--model`` / ``--config`` / ``--ckpt`` / ``--device``, with the official video builder's
options) and shared by every session. The server binds to 127.0.0.1 unless ``--host`` says otherwise, and any
other address needs ``--token``. Once it listens it prints ``ssseg-samv2 serve: http://HOST:PORT/`` (``--port 0``
picks a free port). The reference is docs/server.md.
"""

import argparse
import ipaddress
import os
import sys

from ssseg.samv2.common import CLIError, add_model_arguments, build_model


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "serve",
        help="interactive labelling web app and JSON API for images and videos",
        description="Serve the labelling web page and the JSON API (docs/server.md) until Ctrl-C. Binds to "
        "127.0.0.1 by default; another --host needs --token, and then every /api request needs "
        "'Authorization: Bearer TOKEN'.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--data-root", help="folder whose files and frame folders sessions may open by path")
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every API request")
    parser.add_argument("--max-upload-mb", type=float, default=1024, help="largest upload in MB (default: 1024)")
    parser.add_argument("--session-ttl", type=float, default=3600, help="idle seconds before a session closes (3600)")
    parser.add_argument("--max-sessions", type=int, default=8, help="most open sessions (default: 8)")
    add_model_arguments(parser)
    parser.set_defaults(run=run_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before the model is loaded."""
    if not is_loopback(args.host) and not args.token:
        raise CLIError(
            f"--host {args.host} makes the server reachable from other machines: give --token TOKEN too (every API "
            "request then needs 'Authorization: Bearer TOKEN')"
        )
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be 0..65535, got {args.port}")
    if args.data_root is not None and not os.path.isdir(args.data_root):
        raise CLIError(f"--data-root {args.data_root} is not a folder")
    if not args.max_upload_mb > 0:
        raise CLIError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    if not args.session_ttl > 0:
        raise CLIError(f"--session-ttl must be > 0, got {args.session_ttl}")
    if args.max_sessions < 1:
        raise CLIError(f"--max-sessions must be >= 1, got {args.max_sessions}")


def app_from_args(args: argparse.Namespace):
    """The FastAPI app of parsed ``serve`` arguments (builds the model)."""
    from ssseg.samv2.server import create_app

    model = build_model(args, video=True)
    name = os.path.basename(args.config) if args.config else args.model
    return create_app(
        model,
        model_name=name,
        data_root=args.data_root,
        token=args.token,
        max_upload_mb=args.max_upload_mb,
        session_ttl=args.session_ttl,
        max_sessions=args.max_sessions,
        dtype=args.dtype,
    )


def run_serve(args: argparse.Namespace) -> int:
    from ssseg.modules.utils.optional import import_optional

    check_args(args)
    uvicorn = import_optional("uvicorn", "serve", "ssseg-samv2 serve")
    app = app_from_args(args)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started and self.servers:
                port = self.servers[0].sockets[0].getsockname()[1]
                host = f"[{args.host}]" if ":" in args.host else args.host
                print(f"ssseg-samv2 serve: http://{host}:{port}/ (Ctrl-C stops)", flush=True)

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    try:
        Server(config).run()
    except KeyboardInterrupt:
        pass
    print("ssseg-samv2 serve: stopped", file=sys.stderr)
    return 0

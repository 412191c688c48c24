"""``omostc serve``: argument parsing around ``omostc.serve``; binds, prints the URL, runs uvicorn."""

from __future__ import annotations

import socket
import sys
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from omostc.cli.llm import _library_output, _llm_options, _settings
from omostc.diagnostics import printable

EXTRA_MISSING = ("omostc serve needs the 'serve' extra (Starlette and uvicorn): pip install 'omostc[serve]'")
NOT_SERVED = {"output", "quiet", "retries"}  # flags of `omostc chat` that a web page has no use for


def _chat_options(f: Callable) -> Callable:
    """The LLM flags of ``omostc chat`` (the same options, names and defaults), less those that
    only make sense in a terminal session."""
    f = _llm_options(f)
    params = f.__dict__["__click_params__"]  # where click's option decorators collect a command's options
    params[:] = [p for p in params if p.name not in NOT_SERVED]
    return f


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(printable(f"cannot listen on {host}:{port}: {exc.strerror or exc}")) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@click.command()
@click.argument("folder", default="specs", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback prints a token that every request must carry.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port; 0 picks a free one (the URL is printed).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser (CI, remote machines).")
@click.option("--out", "out_dir", default="renders", show_default=True, type=click.Path(file_okay=False),
              help="The render output folder: OUT/<spec>/<seed>.png and OUT/manifest.jsonl, as `omostc render -o`.")
@_chat_options
def serve(folder: str, host: str, port: int, no_browser: bool, out_dir: str, **kw: Any) -> None:
    """A local web app over FOLDER's specs (default specs/): chat with the LLM, drag the layout,
    edit the YAML (validated as you type), save, render with live progress.

    \b
    Security: it listens on loopback only unless --host says otherwise; then it prints a URL with
    a random token, and every request must carry it. Requests from other sites' pages (Origin)
    or for other host names (DNS rebinding) are refused, and files are read and written only
    inside FOLDER (specs) and OUT (renders). The chat uses the same LLM flags as `omostc chat`.
    """
    try:
        import uvicorn

        from omostc.serve.app import ServeConfig, create_app
        from omostc.serve.security import Guard, is_loopback, new_token
    except ImportError:
        click.echo(EXTRA_MISSING, err=True)
        sys.exit(1)
    settings = _settings({**kw, "retries": 0, "quiet": False, "output": None})
    _library_output(settings, kw["verbose"])
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    token = None if is_loopback(host) else new_token()
    guard = Guard(host=host, port=bound, token=token)
    app = create_app(ServeConfig(folder=Path(folder), out_dir=Path(out_dir), guard=guard, llm=settings))
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
    click.echo(f"omostc serve: {printable(str(Path(folder).resolve()))} at {url}", err=True)
    click.echo(url)  # stdout: the URL alone, for scripts
    sys.stdout.flush()
    if not no_browser:
        threading.Timer(0.5, webbrowser.open, [url]).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()

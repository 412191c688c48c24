"""Who may talk to the server, and which files a request may name.

- A token, when the server listens beyond loopback: every request carries it (header, cookie, or
  ``?token=`` on the first page load, which sets the cookie).
- The ``Host`` header must name this server, and an ``Origin`` (when sent) must be this server's:
  a page on another site cannot drive it, and a name rebound to 127.0.0.1 (DNS rebinding) neither.
- Non-GET requests must say they are JSON, which a cross-site HTML form cannot send.
- Paths are relative to a root folder and stay inside it, symlinks resolved.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_HEADER = "x-omostc-token"
TOKEN_COOKIE = "omostc_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class PathRefused(ValueError):
    """A path a request may not use; the message says why, in the user's terms."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Guard:
    """The checks every request passes: Host, Origin, content type and (when set) the token."""

    host: str  # as bound
    port: int
    token: str | None = None

    def host_ok(self, host: str) -> bool:
        """A Host header naming this server: loopback names (and the bound name) with its port.
        Bound to every interface (0.0.0.0, ::), any name: the token guards it then."""
        if self.host in ("0.0.0.0", "::", ""):
            return True
        shown = {f"[{n}]" if ":" in n else n for n in (*LOOPBACK_NAMES, self.host)}
        allowed = {f"{n}:{self.port}" for n in shown} | (shown if self.port == 80 else set())  # :80 goes unsaid
        return host in {a.lower() for a in allowed}

    def refusal(self, request: Request) -> str | None:
        """Why the request is refused, or None."""
        host = request.headers.get("host", "").lower()
        if not self.host_ok(host):
            return f"refused: the Host header {host!r} is not this server's"
        origin = request.headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin.lower())
            if parts.scheme not in ("http", "https") or parts.netloc != host:
                return f"refused: requests from {origin!r} are not allowed (only from this server's own page)"
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
            # what browsers say of every request, <img> and <script> included, which send no Origin
            return f"refused: a request from another site's page (Sec-Fetch-Site: {fetch_site})"
        if request.method not in SAFE_METHODS:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return "refused: send JSON (Content-Type: application/json)"
        if self.token is not None and not self.token_ok(request):
            return "refused: this server needs its token (open the URL it printed, with ?token=...)"
        return None

    @property
    def cookie(self) -> str:
        """The token's cookie, named for the port: cookies ignore ports, servers must not share one."""
        return f"{TOKEN_COOKIE}_{self.port}"

    def token_ok(self, request: Request) -> bool:
        given = (request.headers.get(TOKEN_HEADER) or request.cookies.get(self.cookie)
                 or request.query_params.get("token") or "")
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())


class GuardMiddleware:
    """Refuses (403, JSON) what the guard refuses; sets the token cookie when a page load brought
    the token in its query."""

    def __init__(self, app: ASGIApp, guard: Guard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        why = self.guard.refusal(request)
        if why is not None:
            response: Response = JSONResponse({"error": why, "diagnostics": []}, status_code=403)
            await response(scope, receive, send)
            return
        token = self.guard.token
        if token is not None and request.query_params.get("token") == token \
                and request.cookies.get(self.guard.cookie) != token:
            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    cookie = f"{self.guard.cookie}={token}; Path=/; HttpOnly; SameSite=Strict"
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"set-cookie", cookie.encode("latin-1"))]}
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        await self.app(scope, receive, send)


SPEC_SUFFIXES = (".yaml", ".yml")


def confine(root: Path, relative: str, *, suffixes: tuple[str, ...] | None = SPEC_SUFFIXES,
            must_exist: bool = False) -> Path:
    """``root/relative``, refused (PathRefused) unless it stays inside ``root``: no absolute path,
    no ``..``, no NUL or backslash, and no symlink (of the file or a folder on the way) leading out."""
    if not relative or "\x00" in relative:
        raise PathRefused("a path must be given, without NUL characters")
    if "\\" in relative:
        raise PathRefused("use / between folders, not \\")
    if relative.startswith("/") or os.path.isabs(relative) or (len(relative) > 1 and relative[1] == ":"):
        raise PathRefused(f"{relative!r}: give a path relative to the served folder, not an absolute one")
    parts = relative.split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise PathRefused(f"{relative!r}: '..', '.' and empty parts are not allowed in a path")
    if any(p.startswith(".") for p in parts):
        raise PathRefused(f"{relative!r}: hidden files and folders (a name starting with '.') are not served")
    if suffixes is not None and not relative.lower().endswith(suffixes):
        raise PathRefused(f"{relative!r}: only {' and '.join(suffixes)} files")
    base = root.resolve()
    target = base.joinpath(*parts)
    resolved = target.resolve()  # follows every symlink on the way, existing or not
    if resolved != base and base not in resolved.parents:
        raise PathRefused(f"{relative!r} leads outside the served folder (a symlink?)")
    if must_exist and not resolved.is_file():
        raise FileNotFoundError(relative)
    return resolved


def relative_files(root: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Every file under ``root`` with one of ``suffixes``, as /-separated relative paths; hidden
    names and anything that resolves outside ``root`` left out."""
    base = root.resolve()
    found = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and _inside(Path(folder, d), base))
        for name in files:
            path = Path(folder, name)
            if not name.startswith(".") and name.lower().endswith(suffixes) and _inside(path, base):
                found.append(path.relative_to(base).as_posix())
    return sorted(found)


def _inside(path: Path, base: Path) -> bool:
    resolved = path.resolve()
    return resolved == base or base in resolved.parents

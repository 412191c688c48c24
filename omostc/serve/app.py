"""The web app of ``omostc serve``: the routes of API.md over a folder of specs. Each route reads
its request, calls the public Python API (through this package's modules) and answers JSON."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from omostc import __version__
from omostc.api import load_scene
from omostc.batch.names import input_name
from omostc.batch.profile import DEFAULT, available_profiles, load_profile
from omostc.diagnostics import OmostcError, printable
from omostc.files import write_text_atomic
from omostc.llm.api import LLMSettings
from omostc.serve import documents
from omostc.serve.chat import ChatFront, parse_messages
from omostc.serve.layout import snap, vocabulary
from omostc.serve.renders import Busy, Renders, past_renders
from omostc.serve.security import SPEC_SUFFIXES, Guard, GuardMiddleware, PathRefused, confine, relative_files
from omostc.spec.render import MAX_SEED
from omostc.spec.yamlio import read_yaml_text

MAX_BODY = 9 * 1024 * 1024  # a request body: a spec up to the loaders' 8 MiB, JSON-escaped
POLL_SECONDS = 0.05  # how often a render's event stream looks for new events
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
off_loop = run_in_threadpool  # parsing a large spec takes seconds: never on the loop that streams the events


@dataclass
class ServeConfig:
    folder: Path  # DIR: the specs
    out_dir: Path  # the render output folder (the batch runner's OUT)
    guard: Guard
    llm: LLMSettings = field(default_factory=LLMSettings)
    chat_backend: object | None = None  # tests: a backend object instead of one made from ``llm``


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, diagnostics: list | None = None):
        super().__init__(message)
        self.status = status
        self.diagnostics = diagnostics or []


def _static() -> Path:
    return Path(str(resources.files("omostc.serve").joinpath("static")))


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to MAX_BODY bytes (a larger one is refused unread)."""
    too_large = BadRequest(f"the request is larger than {MAX_BODY // (1024 * 1024)} MiB", 413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def _text(data: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key!r} must be text")
    return value


def _error(exc: BadRequest | PathRefused | FileNotFoundError | OmostcError) -> JSONResponse:
    if isinstance(exc, BadRequest):
        return JSONResponse({"error": str(exc), "diagnostics": exc.diagnostics}, status_code=exc.status)
    if isinstance(exc, PathRefused):
        return JSONResponse({"error": printable(str(exc)), "diagnostics": []}, status_code=400)
    if isinstance(exc, FileNotFoundError):
        return JSONResponse({"error": printable(f"no such file: {exc}"), "diagnostics": []}, status_code=404)
    return JSONResponse({"error": printable(exc.summary()), "diagnostics": documents.diagnostics_json(exc.diagnostics)},
                        status_code=422)


def _without_password(url: str | None) -> str | None:
    """A server URL as the page may show it: without a user:password part."""
    if not url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else url


def create_app(config: ServeConfig) -> Starlette:
    folder = config.folder.resolve()
    renders = Renders(config.out_dir)
    chat = ChatFront(config.llm, config.chat_backend)

    def spec_path(relative: str, must_exist: bool = False) -> Path:
        return confine(folder, relative, must_exist=must_exist)

    def handled(fn):
        async def route(request: Request) -> Response:
            try:
                return await fn(request)
            except (BadRequest, PathRefused, FileNotFoundError, OmostcError) as exc:
                return _error(exc)
        return route

    async def index(request: Request) -> Response:
        return FileResponse(_static() / "index.html", headers={"Cache-Control": "no-store"})

    async def info(request: Request) -> Response:
        return JSONResponse({"dir": str(folder), "out": str(config.out_dir), "version": __version__,
                             "profiles_default": DEFAULT, "token_required": config.guard.token is not None,
                             "llm": {"model": config.llm.model, "base_url": _without_password(config.llm.base_url)}})

    async def list_specs(request: Request) -> Response:
        return JSONResponse({"specs": relative_files(folder, SPEC_SUFFIXES)})

    async def get_spec(request: Request) -> Response:
        relative = request.path_params["path"]
        path = spec_path(relative, must_exist=True)
        try:
            text = await off_loop(read_yaml_text, path)  # bounded in size, UTF-8 checked, as `omostc validate` reads
        except OmostcError as exc:
            return JSONResponse({"path": relative, "yaml": None, "scene": None, "layout": None,
                                 "diagnostics": documents.diagnostics_json(exc.diagnostics)})
        view = await off_loop(documents.validate_yaml, text, relative)
        return JSONResponse({"path": relative, "yaml": text, "scene": view["scene"], "layout": view["layout"],
                             "diagnostics": view["diagnostics"]})

    async def put_spec(request: Request) -> Response:
        relative = request.path_params["path"]
        path = spec_path(relative)
        text = _text(await _body(request), "yaml")
        assert text is not None
        view = await off_loop(documents.validate_yaml, text, relative)
        if not view["ok"]:
            raise BadRequest(f"{relative}: not saved: the spec does not validate", 422, view["diagnostics"])
        if path.is_dir():
            raise BadRequest(f"{relative}: is a folder")
        try:
            await off_loop(write_text_atomic, path, text)
        except OSError as exc:
            raise BadRequest(printable(f"{relative}: cannot write: {exc.strerror or exc}"), 500) from None
        return JSONResponse({"path": relative, "yaml": text, "scene": view["scene"], "layout": view["layout"]})

    def target_of(data: dict[str, Any]) -> Path | None:
        relative = _text(data, "path", required=False)
        return spec_path(relative) if relative else None

    async def validate(request: Request) -> Response:
        data = await _body(request)
        text = _text(data, "yaml")
        assert text is not None
        name = _text(data, "path", required=False) or "<spec>"
        return JSONResponse(await off_loop(documents.validate_yaml, text, name))

    async def compile_code(request: Request) -> Response:
        data = await _body(request)
        code = _text(data, "code")
        assert code is not None
        return JSONResponse(await off_loop(documents.compile_code, code, target_of(data)))

    async def scene_to_yaml(request: Request) -> Response:
        data = await _body(request)
        return JSONResponse(await off_loop(documents.scene_to_yaml, data.get("scene"), target_of(data)))

    async def layout(request: Request) -> Response:
        return JSONResponse(await off_loop(documents.layout_json, (await _body(request)).get("scene")))

    async def vocab(request: Request) -> Response:
        return JSONResponse(vocabulary())

    async def snap_box(request: Request) -> Response:
        data = await _body(request)
        numbers: list[float] = []
        for key in ("x", "y", "w", "h"):
            value = data.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not abs(value) < 1e6:
                raise BadRequest("x, y, w and h must be numbers (grid cells)")
            numbers.append(float(value))
        x, y, w, h = numbers
        return JSONResponse(snap(x, y, w, h))

    async def profiles(request: Request) -> Response:
        found: list[dict[str, Any]] = []
        for name, path in available_profiles().items():
            try:
                profile = load_profile(str(path))
            except OmostcError as exc:
                found.append({"name": name, "error": exc.summary()})
                continue
            found.append({"name": name, "backend": profile.backend, "model": profile.model,
                          "description": profile.description})
        return JSONResponse({"default": DEFAULT, "profiles": found})

    async def render(request: Request) -> Response:
        data = await _body(request)
        relative = _text(data, "path", required=False)
        text = _text(data, "yaml", required=False)
        profile: str = _text(data, "profile", required=False) or DEFAULT
        seed = data.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED):
            raise BadRequest(f"seed must be a whole number from 0 to {MAX_SEED}")
        if relative is None and text is None:
            raise BadRequest("give 'path' (a saved spec) or 'yaml' (the text to render)")
        if "/" in profile or "\\" in profile or profile.lower().endswith((".yaml", ".yml")):
            raise BadRequest("profile: give a profile's name (GET /api/profiles lists them), not a file")
        load_profile(profile)  # an unknown profile: 422 with its did-you-mean, before any job
        if text is not None:
            view = await off_loop(documents.validate_yaml, text, relative or "<spec>")
            if not view["ok"]:
                raise BadRequest("the spec does not validate", 422, view["diagnostics"])
            if relative is not None:
                spec_path(relative)  # names the output folder only, but a path all the same
            source, name = None, input_name(relative or "scene.yaml")
        else:
            assert relative is not None
            source, name = spec_path(relative, must_exist=True), ""
            await off_loop(load_scene, source)  # a spec that does not load: 422, located
        try:
            job = renders.start(source, text, name, profile, seed)
        except Busy as exc:
            raise BadRequest(str(exc), 429) from None
        return JSONResponse({"job": job.id})

    async def render_events(request: Request) -> Response:
        job = renders.job(request.path_params["job"])
        if job is None:
            raise BadRequest("no such render job", 404)

        async def events():
            sent = 0
            while True:
                while sent < len(job.events):
                    event, data = job.events[sent]
                    sent += 1
                    yield f"event: {event}\ndata: {json.dumps(data)}\n\n"
                if job.finished and sent >= len(job.events):
                    return
                await asyncio.sleep(POLL_SECONDS)

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    async def list_renders(request: Request) -> Response:
        relative = request.query_params.get("path", "")
        spec_path(relative)
        return JSONResponse({"renders": past_renders(config.out_dir, relative)})

    async def image(request: Request) -> Response:
        relative = request.query_params.get("path", "")
        path = confine(config.out_dir, relative, suffixes=(".png",), must_exist=True)
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def chat_turn(request: Request) -> Response:
        data = await _body(request)
        text = _text(data, "text")
        if not text or not text.strip():
            raise BadRequest("'text' must be the request to the model, not empty")
        try:
            messages = parse_messages(data.get("messages"))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        scene = None
        if data.get("scene") is not None:
            scene, problems = await off_loop(documents.scene_from_data, data["scene"])
            if scene is None:
                raise BadRequest("the scene does not validate", 422, documents.diagnostics_json(problems))
        seed = data.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise BadRequest("seed must be a whole number")
        stream = chat.stream(messages, text, scene, bool(data.get("retry")), seed, target_of(data))
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    routes = [
        Route("/", index),
        Route("/api/info", handled(info)),
        Route("/api/specs", handled(list_specs)),
        Route("/api/specs/{path:path}", handled(get_spec), methods=["GET"]),
        Route("/api/specs/{path:path}", handled(put_spec), methods=["PUT"]),
        Route("/api/validate", handled(validate), methods=["POST"]),
        Route("/api/compile", handled(compile_code), methods=["POST"]),
        Route("/api/scene-to-yaml", handled(scene_to_yaml), methods=["POST"]),
        Route("/api/layout", handled(layout), methods=["POST"]),
        Route("/api/vocabulary", handled(vocab)),
        Route("/api/snap", handled(snap_box), methods=["POST"]),
        Route("/api/profiles", handled(profiles)),
        Route("/api/render", handled(render), methods=["POST"]),
        Route("/api/render/{job}/events", handled(render_events)),
        Route("/api/renders", handled(list_renders)),
        Route("/api/image", handled(image)),
        Route("/api/chat", handled(chat_turn), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=_static(), follow_symlink=False), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(GuardMiddleware, guard=config.guard)])

"""The web UI: server-rendered pages (Jinja2) plus small vanilla JS/CSS, no build step.

The pages hold no data themselves: the browser script fills them from the JSON APIs the
server already has (``/backends*``, ``/models*``, ``/v1/*``), sending the API key the user
typed once (kept in ``localStorage``). The HTML and static files stay open without a key.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from quart import Blueprint, redirect, render_template

from .. import __version__

UI_DIR = Path(str(importlib.resources.files("localai") / "ui"))  # package data: found in a wheel install too

bp = Blueprint(
    "ui",
    __name__,
    template_folder=str(UI_DIR / "templates"),
    static_folder=str(UI_DIR / "static"),
    static_url_path="/static",
)

# page name (its path is /ui/<name>, its template <name>.html) -> (navigation label, page title)
PAGES = {
    "backends": ("Backends", "Backends"),
    "models": ("Models", "Models"),
    "chat": ("Chat", "Chat"),
    "images": ("Images", "Image generation"),
    "tts": ("Speech", "Text to speech"),
    "transcribe": ("Transcribe", "Transcription"),
}


async def page(name: str):
    _label, title = PAGES[name]
    return await render_template(f"{name}.html", page=name, title=title, pages=PAGES, version=__version__)


@bp.get("/")
async def index():
    return redirect("/ui/backends")


@bp.get("/ui")
@bp.get("/ui/")
async def ui_index():
    return redirect("/ui/backends")


@bp.get("/ui/backends")
async def backends():
    return await page("backends")


@bp.get("/ui/models")
async def models():
    return await page("models")


@bp.get("/ui/chat")
async def chat():
    return await page("chat")


@bp.get("/ui/images")
async def images():
    return await page("images")


@bp.get("/ui/tts")
async def tts():
    return await page("tts")


@bp.get("/ui/transcribe")
async def transcribe():
    return await page("transcribe")

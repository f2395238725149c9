"""A repo's model card (its README.md from the Hub), fetched off the GUI thread and shown without remote content."""

from __future__ import annotations

import logging
import re
from typing import Any

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QTextDocument
from PySide6.QtWidgets import QTextBrowser, QWidget

log = logging.getLogger(__name__)

MAX_CARD_CHARS = 200_000  # a card longer than this is cut: the rest is on the Hub
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.S)
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_HTML_IMAGE = re.compile(r"<img\b[^>]*>", re.I)


def clean_markdown(text: str) -> str:
    """The card as Markdown to show: no YAML header, images replaced by their alt text, bounded in length."""
    text = _FRONT_MATTER.sub("", text.replace("\r\n", "\n"), count=1)
    text = _MD_IMAGE.sub(lambda m: f"*[image: {m.group(1)}]*" if m.group(1).strip() else "*[image]*", text)
    text = _HTML_IMAGE.sub("*[image]*", text)
    if len(text) > MAX_CARD_CHARS:
        text = text[:MAX_CARD_CHARS] + "\n\n*… the rest is on the Hub.*"
    return text.strip()


def fetch_model_card(repo_id: str, *, revision: str | None = None) -> str | None:
    """The repo's README.md as Markdown ready to show, or None when the repo has none. Blocking: call from a job.

    Goes through huggingface_hub (its cache, token, endpoint and mirror settings); Hub errors become HubError.
    """
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    from models.hub.repos import call_hub

    def download() -> str | None:
        try:
            return str(hf_hub_download(repo_id, "README.md", revision=revision or "main", etag_timeout=5))
        except hf_errors.EntryNotFoundError:
            return None

    path = call_hub(f"Model card of {repo_id}", download)
    if path is None:
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        return clean_markdown(handle.read(MAX_CARD_CHARS + 1))


class ModelCard(QTextBrowser):
    """Renders a card's Markdown. Never fetches anything: images and remote resources are refused (they would tell
    third parties which models are looked at, and can be slow or huge); links open in the user's browser."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.document().setDocumentMargin(12)
        self.anchorClicked.connect(self._open)
        self.refused: list[str] = []  # resources asked for and not loaded (a test checks that none was)

    def loadResource(self, kind: int, url: QUrl | str) -> Any:  # noqa: N802 (Qt's name)
        self.refused.append(QUrl(url).toString() if not isinstance(url, QUrl) else url.toString())
        if kind == QTextDocument.ResourceType.ImageResource:
            return None
        return None

    def show_card(self, markdown: str) -> None:
        self.refused.clear()
        self.setMarkdown(markdown)

    @staticmethod
    def _open(url: QUrl) -> None:
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)

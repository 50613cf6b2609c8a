"""A model card's Markdown as HTML a browser may show: rendered by markdown-it with raw HTML
off (written as text), then cleaned by nh3 (an allow-list sanitizer): no script, no event
handler, no style, and nothing loaded from elsewhere (no images, frames or forms; links only
to http, https and mailto, opened without a referrer). A card is written by whoever uploads
the repo: it must not run anything in a reader's browser."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_TAGS = set(nh3.ALLOWED_TAGS) - {"img", "picture", "source", "video", "audio", "iframe"}


def card_html(markdown: str) -> str:
    """Safe HTML for the card's body (its front matter already taken off)."""
    return str(
        nh3.clean(
            _MARKDOWN.render(markdown),
            tags=_TAGS,
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )

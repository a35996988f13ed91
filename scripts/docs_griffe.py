"""A griffe extension for the docs site: certkit's reST docstring roles as Markdown.

certkit's docstrings use reST roles (``:class:`Target```) and literal blocks
introduced by ``::``; mkdocstrings renders Markdown, where both would show as
typed. This turns a role into inline code and ``::`` into ``:`` (the indented
block after it is already a Markdown code block), and fences each ``>>>`` example
as a ``pycon`` code block, its ``# doctest:`` directives dropped (tests/test_api.py
runs the examples as doctests; the reader needs none of that). Loaded by mkdocs.yml.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`~?([^`]+)`")
DIRECTIVE = re.compile(r"\s*# doctest:[^\n]*")


def fence_examples(text: str) -> str:
    """Each paragraph that starts with ``>>>`` (an example, up to the blank line that ends
    it, as doctest reads it) as a fenced ``pycon`` block."""
    paragraphs = text.split("\n\n")
    for n, para in enumerate(paragraphs):
        if para.startswith(">>>"):
            paragraphs[n] = "```pycon\n" + DIRECTIVE.sub("", para).rstrip("\n") + "\n```"
    return "\n\n".join(paragraphs)


def markdown(text: str) -> str:
    text = ROLE.sub(r"`\1`", text)
    return fence_examples(re.sub(r"(\S)::\n", r"\1:\n", text))


class ReSTRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)

"""A griffe extension for the docs site: certkit's reST docstring roles as Markdown.

certkit's docstrings use reST roles (``:class:`Target```) and literal blocks
introduced by ``::``; mkdocstrings renders Markdown, where both would show as
typed. This turns a role into inline code and ``::`` into ``:`` (the indented
block after it is already a Markdown code block). Loaded by mkdocs.yml.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`~?([^`]+)`")


def markdown(text: str) -> str:
    text = ROLE.sub(r"`\1`", text)
    return re.sub(r"(\S)::\n", r"\1:\n", text)


class ReSTRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)

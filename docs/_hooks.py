"""MkDocs hooks for the hqdepth site (listed under `hooks:` in mkdocs.yml; not a page).

The docstrings are prose, not mkdocstrings cross-reference markup, so text such as
``PATH[@ROOT][?k=v]`` in a docstring looks like a Markdown reference link to mkdocs-autorefs,
which then warns "Could not find cross-reference target" and fails `--strict`. Those warnings are
lowered to INFO (still printed with `mkdocs build -v`) when, and only when, they come from a
docstring in `hqdepth/`; unresolved references in the hand-written pages and every other warning
(broken links, missing anchors, docstring parse problems) still fail the strict build.
"""

import logging
import re

_FROM_DOCSTRING = re.compile(r"from \S*hqdepth/\S+\.py:\d+: .*Could not find cross-reference target")


class _DocstringRefFilter(logging.Filter):
    def filter(self, record):
        if record.levelno == logging.WARNING and _FROM_DOCSTRING.search(record.getMessage()):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def on_startup(command, dirty):
    logging.getLogger("mkdocs.plugins.mkdocs_autorefs._internal.plugin").addFilter(_DocstringRefFilter())

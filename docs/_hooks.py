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


# ----------------------------------------------------------------------------------------------
# "Recipe sources" page: the tables of `hqdepth recipes NAME --sources --markdown`, generated at build time
# from hqdepth/training/recipes/sources/*.yaml (pure Python, no TensorFlow), so the page cannot drift from
# the recipes.

RECIPE_SOURCES_MARKER = "<!-- hqdepth:recipe-sources -->"


def _recipe_sources_markdown():
    from hqdepth.commands.recipes import sources_markdown
    from hqdepth.training import recipe_sources, recipes

    parts = []
    for name in recipe_sources.sourced_recipes():
        parts.append(f"## {name}\n\n" + sources_markdown(name, recipes.resolve_config(name)))
    return "\n\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    if RECIPE_SOURCES_MARKER not in markdown:
        return markdown
    import sys
    from pathlib import Path

    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return markdown.replace(RECIPE_SOURCES_MARKER, _recipe_sources_markdown())

"""The documentation: the MkDocs site builds offline with --strict, and every README link resolves."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


_INLINE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def markdown_links(text):
    """Targets of inline links, images and reference definitions, outside fenced code and inline code."""
    text = _FENCE.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    return _INLINE.findall(text) + _REFERENCE.findall(text)


def local_target(link):
    """The repository-relative path a link points to, or None for web links and pure anchors."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE) or link.startswith("#"):
        return None
    return link.split("#", 1)[0].split("?", 1)[0]


def test_markdown_links_parser():
    text = (
        "See [a](docs/a.md#x), ![pic](docs/images/p.png \"title\"), [web](https://example.org),\n"
        "[anchor](#local), `[not](code.md)`.\n```\n[inside](fence.md)\n```\n<!-- [c](hidden.md) -->\n"
        "[ref]: docs/ref.md\n"
    )
    links = markdown_links(text)
    assert [local_target(link) for link in links if local_target(link)] == [
        "docs/a.md", "docs/images/p.png", "docs/ref.md"]


def test_readme_links_resolve():
    links = markdown_links(README.read_text(encoding="utf-8"))
    targets = [target for target in map(local_target, links) if target]
    assert targets, "no relative links found in README.md"
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    assert "docs/images/demo_summary.png" in targets, "the README shows the demo picture"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 220, f"README.md has {lines} lines: keep it the front door and move reference text to docs/"


def test_mkdocs_builds_strict_and_offline(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs packages are in the `docs` and `test` extras")
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    # Any attempt to reach the network through Python's HTTP stack fails fast.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env[name] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site),
         "--config-file", str(ROOT / "mkdocs.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    warnings = re.findall(r"^WARNING\s+-.*$", log, re.MULTILINE)  # MkDocs' own log lines (not TensorFlow's)
    assert not warnings, "\n".join(warnings)

    index = (site / "index.html").read_text(encoding="utf-8")
    assert "fonts.googleapis.com" not in index, "the theme would fetch Google Fonts (set theme.font: false)"
    # The API reference is generated from the docstrings.
    api = (site / "api" / "models" / "index.html").read_text(encoding="utf-8")
    assert "build_model" in api and "register_model" in api
    losses = (site / "api" / "losses" / "index.html").read_text(encoding="utf-8")
    assert "BerHu" in losses and "HQMDLoss" in losses
    # Every page of the navigation was written.
    for page in ("getting-started", "datasets", "training", "evaluation", "predict-export", "reproducing",
                 "benchmarks", "installation", "models/hqmd", "models/bts", "models/mrpan", "recipe-sources"):
        assert (site / page / "index.html").is_file(), page
    # The recipe sources page is generated from the sources tables (docs/_hooks.py).
    sources = (site / "recipe-sources" / "index.html").read_text(encoding="utf-8")
    assert 'id="hqmd_plus_full"' in sources and "faithful" in sources

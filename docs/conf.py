"""Sphinx configuration for the tricorn documentation.

Build with ``nox -s docs``, or from the repository root with
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
Warnings are errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The local extension that renders the option reference from tricorn.Config.
sys.path.insert(0, str(HERE / "_ext"))
# The package itself, so a build from a clone works without an install; an
# editable install (what `nox -s docs` does) points at the same files.
sys.path.insert(0, str(HERE.parent / "src"))

import tricorn  # noqa: E402

project = "tricorn"
author = "the tricorn authors"
copyright = "the tricorn authors"
version = tricorn.__version__
release = tricorn.__version__

extensions = ["tricorn_config"]

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
# _build is the output directory and examples/ holds programs, not pages:
# neither may be read as a source.
exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store"]

highlight_language = "python3"

html_theme = "alabaster"
html_title = f"tricorn {release}"
html_theme_options = {
    "description": "An ASGI server on structured concurrency",
    "fixed_sidebar": True,
}
html_sidebars = {
    "**": ["about.html", "navigation.html", "relations.html", "searchbox.html"],
}

"""Sphinx configuration of mpqueue's documentation: MyST Markdown pages, the furo
theme, the CLI from the click groups (sphinx-click) and the configuration keys,
metrics, failure types and exit codes from the code (_ext/mpqueue_reference.py).

Works with Debian 12's packages (python3-sphinx 5.3, python3-myst-parser 0.18,
furo 2022.12.7, python3-sphinx-click 4.4) and with the newest releases:
    python -m sphinx -W -b html docs docs/_build/html
    python -m sphinx -W -b man docs docs/_build/man
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))          # mpqueue itself, installed or not (the .deb builds from the tree)

import mpqueue  # noqa: E402

project = "mpqueue"
author = "mpqueue maintainers"
copyright = "mpqueue maintainers"
release = version = mpqueue.__version__

extensions = ["myst_parser", "sphinx_click", "sphinx.ext.autodoc", "mpqueue_reference"]
source_suffix = {".md": "markdown"}
root_doc = master_doc = "index"             # master_doc: Sphinx < 4's name of it
exclude_patterns = ["_build", "README.md"]
# Headings h1-h3 get anchors, so [text](page.md#a-heading) links resolve (and are checked).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]
nitpicky = False
autodoc_member_order = "bysource"

html_theme = "furo"
html_title = f"mpqueue {release}"
html_static_path = []

# Section 1: commands; 5: file formats. Generated from the same pages as the HTML.
man_pages = [
    ("reference/man/mpqueue", "mpqueue", "run an mpqueue service, check its configuration, serve its dashboard",
     [author], 1),
    ("reference/man/mpqctl", "mpqctl", "inspect and control mpqueue services: push, status, jobs, retry",
     [author], 1),
    ("reference/man/mpqueue.yaml", "mpqueue.yaml", "the configuration file of an mpqueue service", [author], 5),
]
man_show_urls = False
man_make_section_directory = False

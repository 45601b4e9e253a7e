"""Fixtures for the documentation tests: the repository root and one strict docs build.

The API-coverage test reads the built site rather than re-implementing mkdocstrings' rules,
so "documented" means exactly what a reader of the published reference sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout the tests run from (holds mkdocs.yml, docs/ and README.md)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the docs once, strictly, into a temporary directory and return it.

    A failed build fails every test that needs the site, with mkdocs' own error output.
    ``CHANLOG_DOCS_SITE`` names an already built site to reuse instead (a CI step that just
    ran ``mkdocs build --strict`` on this checkout).
    """
    prebuilt = os.environ.get("CHANLOG_DOCS_SITE")
    if prebuilt:
        site = Path(prebuilt)
        if not (site / "reference").is_dir():
            pytest.fail(f"CHANLOG_DOCS_SITE={prebuilt} holds no built API reference")
        return site
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install .[docs])")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(
            f"mkdocs build --strict failed (exit {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    return site

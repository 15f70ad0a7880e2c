"""The standalone HTML report, opened in a real headless browser (Debian's chromium): what it
renders, that nothing the container controls turns into markup, and a screenshot kept in the
test artifacts (``$DRIFTTOOLS_TEST_ARTIFACTS``, else ``.artifacts/`` of the checkout)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from click.testing import CliRunner
from drifttools_cli.main import cli

import drifttools
from drifttools.evidence.exports import export_lines
from drifttools.options import BaselineOptions, ClassifyOptions
from tests.engine import docker, run_drifted

ARTIFACTS = Path(
    os.environ.get("DRIFTTOOLS_TEST_ARTIFACTS", Path(__file__).parents[1] / ".artifacts")
)
HOSTILE = "/tmp/<img src=x onerror=alert(1)>\x1b[2J"


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_html_export_renders_offline_in_chromium(busybox_image: dict, tmp_path: Path) -> None:
    script = (
        "echo 'exec sleep 1' >> /entrypoint.sh;"
        " echo x > '/tmp/<img src=x onerror=alert(1)>'\"$(printf '\\033[2J')\""
    )
    name = run_drifted(busybox_image["tag"], "investigate-html", script)
    try:
        cache = tmp_path / "cache"
        report = drifttools.diff(
            name,
            baseline=BaselineOptions(cache=drifttools.LayerCache(cache)),
            classification=ClassifyOptions(yara=False),
        )
        assert HOSTILE in {c.path for c in report.changes}
        page = tmp_path / "report.html"
        result = CliRunner().invoke(
            cli, ["export", name, "--to", "html", "-o", str(page), "--cache-dir", str(cache)]
        )
        assert result.exit_code == 0, result.output
    finally:
        docker("rm", "-f", name, check=False)
    text = page.read_text()
    assert text.splitlines()[0] == next(export_lines(report, "html"))  # <!DOCTYPE html>
    assert "<img" not in text and "\x1b" not in text and "&lt;img src=x" in text
    assert "Content-Security-Policy" in text and "<script" not in text

    dom = _chromium("--dump-dom", page.as_uri()).stdout
    headings = re.findall(r'<h2 id="(\w+)">', dom)
    assert headings == ["severity", "timeline", "changes", "processes", "diffs", "logs"]
    assert "<svg" in dom and "<!-- container start -->" in dom  # the timeline and its legend
    assert "+exec sleep 1" in dom and "/entrypoint.sh" in dom
    assert "<img" not in dom  # the hostile name stayed text in the browser's own DOM
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "html-export.png"
    shot.unlink(missing_ok=True)
    _chromium("--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000

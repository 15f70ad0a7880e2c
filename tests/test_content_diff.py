"""What changed inside modified files: bounded, escaped unified diffs for text, a byte summary
for binaries; the image's bytes read from the engine's layer dirs; `drifttools show --diff`."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from click.testing import CliRunner
from drifttools_cli.main import cli

import drifttools
from drifttools.analysis.content_diff import content_diff
from drifttools.options import BaselineOptions, ClassifyOptions
from tests.engine import docker, run_drifted
from tests.reports import assert_valid_report


def test_text_diff_is_unified_escaped_and_bounded() -> None:
    before = b"".join(f"line {n}\n".encode() for n in range(100))
    after = before.replace(b"line 10\n", b"line ten \x1b[2J\xe2\x80\xae\n") + b"tail\n"
    diff = content_diff("/etc/x", before, after, max_lines=100, max_bytes=10_000)
    assert (diff.kind, diff.lines_added, diff.lines_removed, diff.truncated) == (
        "text",
        2,
        1,
        False,
    )
    assert diff.unified is not None and "\x1b" not in diff.unified and "\u202e" not in diff.unified
    assert "+line ten \\x1b[2J\\u202e" in diff.unified.splitlines()
    expected = difflib.unified_diff(
        before.decode().splitlines(), after.decode().splitlines(), "a/etc/x", "b/etc/x", lineterm=""
    )
    assert len(diff.unified.splitlines()) == len(list(expected))

    many = b"".join(f"other {n}\n".encode() for n in range(100))
    cut = content_diff("/etc/x", before, many, max_lines=20, max_bytes=10_000)
    assert cut.truncated and len(cut.unified.splitlines()) == 20
    assert (cut.lines_added, cut.lines_removed) == (100, 100)  # counted over the whole diff
    small = content_diff("/etc/x", before, many, max_lines=1000, max_bytes=300)
    assert small.truncated and len(small.unified) <= 300


def test_binary_files_get_a_byte_summary() -> None:
    before = bytes(range(256)) * 4
    after = bytearray(before)
    after[100] ^= 0xFF
    after[900] ^= 0xFF
    diff = content_diff("/bin/x", before, bytes(after) + b"\0\0", max_lines=10, max_bytes=100)
    assert (diff.kind, diff.size_before, diff.size_after) == ("binary", 1024, 1026)
    assert (diff.common_prefix, diff.bytes_differing, diff.unified) == (100, 2, None)
    assert diff.common_suffix == 0  # the two NULs appended
    latin = content_diff("/x", b"caf\xe9\n", b"cafe\n", max_lines=10, max_bytes=100)
    assert latin.kind == "binary"  # not UTF-8: no text diff that would misstate the bytes


def test_live_container_diffs_against_the_layer_and_show(
    busybox_image: dict, tmp_path: Path
) -> None:
    script = (
        "printf '#!/bin/sh\\necho pwned \\033[2J\\nexec sleep 100000\\n' > /entrypoint.sh;"
        " printf 'he\\000lo\\n' > /opt/app/a"
    )
    name = run_drifted(busybox_image["tag"], "investigate-diff", script)
    try:
        cache = drifttools.LayerCache(tmp_path / "cache")
        report = drifttools.diff(
            name, baseline=BaselineOptions(cache=cache), classification=ClassifyOptions(yara=False)
        )
        document = report.to_dict()
        assert_valid_report(document)
        changes = {c["path"]: c for c in document["changes"]}
        script_diff = changes["/entrypoint.sh"]["diff"]
        assert script_diff["kind"] == "text"
        assert script_diff["unified"].splitlines()[2:] == [
            "@@ -1,2 +1,3 @@",
            " #!/bin/sh",
            "+echo pwned \\x1b[2J",
            " exec sleep 100000",
        ]
        binary = changes["/opt/app/a"]["diff"]
        assert (binary["kind"], binary["size_before"], binary["size_after"]) == ("binary", 6, 6)
        assert (binary["common_prefix"], binary["common_suffix"], binary["bytes_differing"]) == (
            2,
            3,
            1,
        )
        html = report._repr_html_()
        assert "<details" in html and "\x1b" not in html and "echo pwned \\x1b[2J" in html
        assert json.loads(report.to_json())["changes"]  # the JSON form carries them too

        shown = CliRunner().invoke(
            cli, ["show", name, "/entrypoint.sh", "--diff", "--cache-dir", str(tmp_path / "cache")]
        )
        assert shown.exit_code == 1, shown.output
        assert "/entrypoint.sh: modified" in shown.output and "sha256 " in shown.output
        assert "+echo pwned \\x1b[2J" in shown.output and "\x1b" not in shown.output
        same = CliRunner().invoke(
            cli, ["show", name, "/bin/busybox", "--cache-dir", str(tmp_path / "cache")]
        )
        assert (same.exit_code, same.output) == (0, "/bin/busybox: no drift\n")
    finally:
        docker("rm", "-f", name, check=False)

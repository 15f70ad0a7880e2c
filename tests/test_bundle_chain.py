"""The action log's hash chain is checked by every ``verify``, and signed through the manifest.

The tampering an attacker with write access to an unsigned bundle can do by hand: remove,
reorder or edit one line of ``acquisition/actions.jsonl`` and re-seal the manifest so that
every member digest is right again. Each must fail verification.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from drifttools_cli.evidence import verify as verify_command

from drifttools.evidence.bundle import verify_bundle
from drifttools.evidence.bundle.actions import SEALING, STARTED, ActionLog
from drifttools.evidence.bundle.layout import ACTIONS, MANIFEST, SIGNATURE, canonical_manifest
from drifttools.evidence.bundle.seal import seal


def _log() -> bytes:
    log = ActionLog()
    log.add(STARTED, reference="web-1")
    for step in ("processes read", "snapshot taken", "baseline read"):
        log.add(step)
    log.add(SEALING)
    return log.data()


def _bundle(root: Path, actions: bytes, signer: Ed25519PrivateKey | None = None) -> Path:
    """A directory bundle holding only ``actions`` and a report, sealed (again)."""
    (root / MANIFEST).unlink(missing_ok=True)
    (root / SIGNATURE).unlink(missing_ok=True)
    (root / ACTIONS).parent.mkdir(parents=True, exist_ok=True)
    (root / ACTIONS).write_bytes(actions)
    (root / "report.json").write_text("{}\n")
    seal(root, signer)
    return root


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _edit(line: bytes) -> bytes:
    entry = json.loads(line)
    entry["action"] = "nothing happened"
    return json.dumps(entry, sort_keys=True).encode() + b"\n"


TAMPERING: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "first line removed": lambda lines: lines[1:],
    "middle line removed": lambda lines: lines[:2] + lines[3:],
    "last line removed": lambda lines: lines[:-1],
    "two lines swapped": lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],
    "one line edited": lambda lines: [*lines[:2], _edit(lines[2]), *lines[3:]],
    "line appended": lambda lines: [*lines, lines[-1]],
    "not JSON": lambda lines: [*lines[:2], b"{oops\n", *lines[3:]],
}


def test_an_intact_chain_verifies(tmp_path: Path) -> None:
    result = verify_bundle(_bundle(tmp_path / "b", _log()))
    assert result.ok, result.problems
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_bytes())
    assert manifest["actions"]["entries"] == 5


@pytest.mark.parametrize("how", TAMPERING)
def test_tampered_and_resealed_log_fails_verify(tmp_path: Path, how: str) -> None:
    tampered = b"".join(TAMPERING[how](_lines(_log())))
    root = _bundle(tmp_path / "b", tampered)
    result = verify_bundle(root)
    assert not result.ok and all(p.startswith(ACTIONS) for p in result.problems), result.problems
    cli = CliRunner().invoke(verify_command, [str(root)])
    assert cli.exit_code == 1 and "FAILED" in cli.stdout


def test_a_missing_log_fails_verify(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b", _log())
    (root / ACTIONS).unlink()
    (root / MANIFEST).unlink()
    seal(root, None)
    assert f"{ACTIONS}: missing" in verify_bundle(root).problems


def test_the_signature_covers_the_chain_head(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    root = _bundle(tmp_path / "b", _log(), key)
    assert verify_bundle(root).ok
    # the last line dropped and its head re-recorded: only a new signature would hide it
    tampered = tmp_path / "t"
    shutil.copytree(root, tampered)
    (tampered / ACTIONS).write_bytes(b"".join(_lines(_log())[:-1]))
    manifest = json.loads((tampered / MANIFEST).read_bytes())
    manifest["actions"]["head"] = "0" * 64
    (tampered / MANIFEST).write_bytes(canonical_manifest(manifest))
    problems = verify_bundle(tampered).problems
    assert any("signature does not verify" in p for p in problems), problems

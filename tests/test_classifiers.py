"""Classifiers on inputs made here, without the engine: ELF and script facts of programs
compiled here, and the read of a live process's executable, refused once its pid may be
another process's.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

import pytest

from drifttools.acquisition.processes import read_processes
from drifttools.analysis.classifiers.elf import content_facts, elf_facts, shebang
from drifttools.analysis.classifiers.processes import read_exe
from tests.engine import compile_c

HERE = Path(__file__).parent


@pytest.mark.parametrize(
    ("elf_class", "header", "machine", "arch"),
    [(1, "HHIIIIIHHHHHH", 3, "x86"), (2, "HHIQQQIHHHHHH", 62, "x86-64")],
)
def test_elf_headers_of_both_classes(elf_class: int, header: str, machine: int, arch: str) -> None:
    ident = b"\x7fELF" + bytes([elf_class, 1, 1]) + bytes(9)
    fields = struct.pack("<" + header, 2, machine, 1, 0x8048000, 0, 0, 0, 52, 32, 0, 40, 0, 0)
    facts = elf_facts(ident + fields + bytes(64))
    assert facts is not None
    assert (facts["class"], facts["type"], facts["arch"]) == (
        f"ELF{32 * elf_class}",
        "executable",
        arch,
    )


def test_elf_facts_of_compiled_programs(tmp_path: Path) -> None:
    miner = compile_c(HERE / "miner.c", tmp_path / "miner", "-static").read_bytes()
    static = elf_facts(miner)
    assert static is not None
    assert (static["class"], static["arch"], static["linking"]) == ("ELF64", "x86-64", "static")
    assert static["stripped"] is False and static["packed"] == []
    compile_c(HERE / "miner.c", tmp_path / "dyn", "-s")
    dynamic = elf_facts((tmp_path / "dyn").read_bytes())
    assert dynamic is not None and dynamic["linking"] == "dynamic"
    assert dynamic["interpreter"].startswith("/lib") and dynamic["stripped"] is True
    random = elf_facts(miner[:64] + os.urandom(200_000))
    assert random is not None and "high-entropy" in random["packed"]
    assert elf_facts(b"MZ" + b"\0" * 100) is None
    assert elf_facts(b"\x7fELF\x02\x01" + b"\xff" * 10) is None  # truncated: not ELF facts
    assert shebang(b"#!/usr/bin/env python3 -u\n") == "python3"
    info, tags = content_facts(b"#!/bin/sh\n", 0o644)
    assert info == {"shebang": "/bin/sh"} and tags == ["script"]
    _, tags = content_facts(b"#!/bin/sh\n", 0o755)
    assert tags == ["script", "executable"]


def test_a_process_gone_before_classification_is_recorded() -> None:
    [me], _ = read_processes([os.getpid()])
    data, error = read_exe(me, 1024)
    assert error is None and data is not None and data.startswith(b"\x7fELF")
    # the same pid with another start time: another process, whose executable is never read
    reused = dataclasses.replace(me, start_ticks=me.start_ticks + 1)
    data, error = read_exe(reused, 1024)
    assert data is None and error is not None and "gone" in error

"""Our own facts about executables: ELF headers and sections, shebangs, set-id bits.

Parsed from bytes already read (never from a path), tolerant of truncated or hostile
input: a field that cannot be read is left out, never raised.
"""

from __future__ import annotations

import struct
from typing import Any

from drifttools import _native

_MACHINES = {
    3: "x86",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    40: "arm",
    62: "x86-64",
    183: "aarch64",
    243: "riscv",
}
_PT_DYNAMIC, _PT_INTERP, _PT_LOAD = 2, 3, 1
_SHT_NOBITS = 8
#: Sections whose Shannon entropy (bits per byte) is above this look compressed or encrypted.
HIGH_ENTROPY = 7.2
_ENTROPY_SAMPLE = 16 * 1024  # bytes sampled (evenly strided) per section
_ENTROPY_SECTIONS = 4  # the largest sections only
_ENTROPY_MIN = 1024


def _sample(data: bytes, offset: int, size: int) -> bytes:
    """At most :data:`_ENTROPY_SAMPLE` bytes of a span, in evenly strided runs of 256."""
    if size <= _ENTROPY_SAMPLE:
        return data[offset : offset + size]
    runs = _ENTROPY_SAMPLE // 256
    step = size // runs
    return b"".join(data[offset + i * step : offset + i * step + 256] for i in range(runs))


def elf_facts(data: bytes) -> dict[str, Any] | None:
    """Class, byte order, type, arch, linking, interpreter, stripped, packing of an ELF file.

    None when ``data`` is not ELF. ``packed`` holds the reasons it looks packed
    (``upx``, ``high-entropy``, ``no-sections``).
    """
    if len(data) < 52 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    bits = 64 if data[4] == 2 else 32
    end = "<" if data[5] == 1 else ">"
    facts: dict[str, Any] = {"class": f"ELF{bits}", "endian": "little" if end == "<" else "big"}
    header = "HHIQQQIHHHHHH" if bits == 64 else "HHIIIIIHHHHHH"  # entry, phoff, shoff: 8 or 4
    try:
        (
            e_type,
            e_machine,
            _,
            _,
            phoff,
            shoff,
            _,
            _,
            phentsize,
            phnum,
            shentsize,
            shnum,
            shstrndx,
        ) = struct.unpack_from(end + header, data, 16)
    except struct.error:
        facts["truncated"] = True
        return facts
    facts["type"] = {1: "relocatable", 2: "executable", 3: "shared", 4: "core"}.get(e_type, "other")
    facts["arch"] = _MACHINES.get(e_machine, f"machine-{e_machine}")
    interp, dynamic = _program_headers(data, end, bits, phoff, phentsize, phnum)
    facts["interpreter"] = interp
    facts["linking"] = "dynamic" if interp else ("static-pie" if dynamic else "static")
    sections = _sections(data, end, bits, shoff, shentsize, shnum, shstrndx)
    names = [name for name, _, _ in sections]
    facts["stripped"] = ".symtab" not in names
    packed = []
    if b"UPX!" in data[:4096] or any(name.startswith("UPX") for name in names):
        packed.append("upx")
    spans = [(off, size) for _, off, size in sections if size >= _ENTROPY_MIN] or [(0, len(data))]
    spans = sorted(spans, key=lambda span: -span[1])[:_ENTROPY_SECTIONS]
    highest = max(_native.entropy(_sample(data, off, size)) for off, size in spans)
    facts["max_entropy"] = round(highest, 3)
    if highest > HIGH_ENTROPY:
        packed.append("high-entropy")
    if not sections and e_type in (2, 3):
        packed.append("no-sections")
    facts["packed"] = packed
    return facts


def _program_headers(
    data: bytes, end: str, bits: int, offset: int, size: int, count: int
) -> tuple[str | None, bool]:
    interp, dynamic = None, False
    layout = end + ("IIQQQQQQ" if bits == 64 else "IIIIIIII")
    for index in range(min(count, 256)):
        try:
            fields = struct.unpack_from(layout, data, offset + index * size)
        except struct.error:
            break
        p_type = fields[0]
        p_offset, p_filesz = (fields[2], fields[5]) if bits == 64 else (fields[1], fields[4])
        if p_type == _PT_DYNAMIC:
            dynamic = True
        elif p_type == _PT_INTERP:
            raw = data[p_offset : p_offset + min(p_filesz, 4096)]
            interp = raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace") or None
    return interp, dynamic


def _sections(
    data: bytes, end: str, bits: int, offset: int, size: int, count: int, names_index: int
) -> list[tuple[str, int, int]]:
    """``(name, file offset, size in the file)`` of each section, empty if unreadable."""
    if offset == 0 or count == 0 or count > 4096:
        return []
    layout = end + ("IIQQQQIIQQ" if bits == 64 else "IIIIIIIIII")
    raw = []
    for index in range(count):
        try:
            fields = struct.unpack_from(layout, data, offset + index * size)
        except struct.error:
            return []
        name, kind, _, _, sh_offset, sh_size = fields[:6]
        raw.append((name, kind, sh_offset, 0 if kind == _SHT_NOBITS else sh_size))
    table = raw[names_index] if names_index < len(raw) else None
    strings = data[table[2] : table[2] + table[3]] if table else b""
    found = []
    for name_at, _, sh_offset, sh_size in raw:
        name = strings[name_at:].split(b"\0", 1)[0].decode("ascii", "replace")
        found.append((name, sh_offset, max(0, min(sh_size, len(data) - sh_offset))))
    return found


def shebang(data: bytes) -> str | None:
    """The interpreter a ``#!`` line names (``env``'s argument for ``/usr/bin/env X``)."""
    if not data.startswith(b"#!"):
        return None
    words = data[2:256].split(b"\n", 1)[0].split()
    if not words:
        return None
    interpreter = words[0].decode("utf-8", "backslashreplace")
    if interpreter.rsplit("/", 1)[-1] == "env":
        rest = [w for w in words[1:] if not w.startswith(b"-")]
        if rest:
            return rest[0].decode("utf-8", "backslashreplace")
    return interpreter


def content_facts(data: bytes, mode: int) -> tuple[dict[str, Any], list[str]]:
    """The ELF or script facts of a file's bytes and the tags they give.

    Tags: ``elf``, ``script``, ``executable`` (ELF, or a script with an x bit),
    ``shared-library``, ``static``, ``packed``, ``upx``.
    """
    info: dict[str, Any] = {}
    tags: list[str] = []
    elf = elf_facts(data)
    if elf is not None:
        info["elf"] = elf
        tags += ["elf", "executable"]
        if elf.get("type") == "shared" and not elf.get("interpreter"):
            tags.append("shared-library")
        if elf.get("linking") == "static":
            tags.append("static")
        if elf.get("packed"):
            tags.append("packed")
        if "upx" in elf.get("packed", ()):
            tags.append("upx")
    else:
        interpreter = shebang(data)
        if interpreter is not None:
            info["shebang"] = interpreter
            tags.append("script")
            if mode & 0o111:
                tags.append("executable")
    return info, tags

"""Rule sets of the shapes public ones have, written here (no public rules are copied), and
the samples they are compared on; used by tests/test_yara_sets.py and benchmarks/classify.py.

Shapes: hundreds of files of many rules, an index file whose includes are relative to the
including file (two levels), Latin-1 bytes in comments and in a string literal, external
variables (``filename``, ``filepath``, ``extension``, ``filetype``, ``owner``), private and
global rules, rules that use another, modules ``pe``, ``elf``, ``math`` and ``hash``, and
weights as signature-base (``score``), Elastic (numeric ``severity``) and ReversingLabs
(``threat_level``) write them.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

#: The bytes of one sample whose md5 a ``hash`` rule names.
HASHED = b"drifttools hashed sample\n"


def _elf() -> bytes:
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHI", 2, 62, 1)
    header += struct.pack("<QQQIHHHHHH", 0x401000, 0, 0, 0, 64, 56, 0, 64, 0, 0)
    return header + b"\0" * 64


def _rule(file: int, index: int) -> str:
    """One rule of file ``file``: a marker string, and every few rules another shape."""
    name = f"r{file}_{index}"
    marker = f"marker-{file}-{index}"
    kind = index % 8
    weight = ("score = 75", "severity = 100", "threat_level = 3", 'author = "x"')[index % 4]
    meta = f'        description = "rule {index} of file {file}"\n        {weight}\n'
    condition = "$a"
    extra = ""
    if kind == 1:
        condition = '$a or filename == "special.txt"'
    elif kind == 2:
        condition = '$a and filepath contains "/srv/"'
    elif kind == 3:
        condition = '$a or (extension == ".php" and filetype == "PHP")'
    elif kind == 4:
        extra = "        $h = { 6D 61 72 6B 65 72 2D ?? }\n"
        condition = "$a and #h > 0"
    elif kind == 5:
        condition = '$a or (uint32(0) == 0x464c457f and filetype == "ELF")'
    elif kind == 6:
        condition = f'$a and owner == "root" and r{file}_{index - 1}'
    return (
        f"rule {name} : tag{index % 3} set{file % 5}\n{{\n    meta:\n{meta}"
        f'    strings:\n        $a = "{marker}"\n{extra}    condition:\n        {condition}\n}}\n\n'
    )


def _module_rules(file: int) -> str:
    md5 = hashlib.md5(HASHED).hexdigest()
    return f"""
import "pe"
import "elf"
import "math"
import "hash"

private rule is_elf_{file} {{ condition: uint32(0) == 0x464c457f }}

rule elf_exec_{file} : module {{
    meta:
        score = 60
    condition:
        is_elf_{file} and elf.type == elf.ET_EXEC
}}

rule high_entropy_{file} : module {{
    condition:
        filesize > 1024 and math.entropy(0, filesize) > 7.5
}}

rule hashed_{file} : module {{
    meta:
        severity = "critical"
        md5 = "{md5}"
    condition:
        hash.md5(0, filesize) == "{md5}"
}}

rule not_pe_{file} : module {{
    strings:
        $m = "marker-{file}-0"
    condition:
        not pe.is_pe and $m
}}
"""


@dataclass(frozen=True)
class RuleTree:
    """A generated rule directory: its top-level files (what ``yara`` is given) and size."""

    root: Path
    top_files: tuple[Path, ...]
    rules: int


def write_rule_tree(root: Path, files: int, rules_per_file: int) -> RuleTree:
    """``files`` rule files of ``rules_per_file`` rules each under ``root``, plus an index
    file that includes a folder of them (relative to itself, two levels deep)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "family" / "deep").mkdir(parents=True, exist_ok=True)
    count = 0
    top: list[Path] = []
    for file in range(files):
        family = file % 50 == 3
        header = "// generated rules\n"
        if file % 7 == 0 and not family:  # (yara-x's own compiler rejects it in an include)
            header = "// r\xe9gles g\xe9n\xe9r\xe9es, caf\xe9\n"  # Latin-1 in a comment
        body = "".join(_rule(file, index) for index in range(rules_per_file))
        count += rules_per_file
        if file % 10 == 0:
            body = _module_rules(file) + body
            count += 5
        if file % 25 == 0:
            body = f"private global rule small_{file} {{ condition: filesize < 10MB }}\n\n" + body
            count += 1
        data = (header + body).encode("latin-1")
        if family:
            target = root / "family" / f"fam{file}.yar"
        else:
            target = root / f"set{file:04d}.yar"
            top.append(target)
        target.write_bytes(data)
    # family/fam*.yar are reached only through the index, which includes them relative to
    # itself; family/deep/leaf.yar relative to family/fam*.yar's folder.
    (root / "family" / "deep" / "leaf.yar").write_bytes(
        b'rule leaf_rule { strings: $a = "caf\\xe9 leaf" condition: $a }\n'
    )
    count += 1
    includes = sorted((root / "family").glob("fam*.yar"))
    if includes:
        includes[0].write_bytes(includes[0].read_bytes() + b'\ninclude "deep/leaf.yar"\n')
    index = root / "family_index.yar"
    index.write_text("".join(f'include "./family/{p.name}"\n' for p in includes))
    top.append(index)
    return RuleTree(root, tuple(sorted(top)), count)


def samples(root: Path) -> dict[str, bytes]:
    """Container path -> bytes of files that match a spread of the generated rules."""
    import random

    noise = random.Random(7).randbytes(4096)
    return {
        "/srv/app/special.txt": b"nothing but marker-1-2 and marker-3-1\n",
        "/srv/www/index.php": b"<?php echo 'marker-10-3'; ?>\n marker-2-4 marker-5-6 marker-5-5",
        "/usr/bin/tool": _elf() + b"marker-0-0 marker-20-4 marker-13-5",
        "/tmp/blob.bin": noise + b"marker-53-0 caf\xe9 leaf",
        "/opt/hashed": HASHED,
        "/home/x/notes.txt": b"marker-102-7 marker-3-0 marker-4-2 caf\xc3\xa9",
    }

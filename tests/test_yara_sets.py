"""Rule sets of public shapes (tests/yara_sets.py): compiled in one pass, and matching what
the reference tools match: Debian's ``yara`` for yara-python, yara-x's own compiler and
scanner for yara-x, with the same external variables."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import drifttools
from drifttools import ClassifyOptions, classify, diff_snapshot, load_image
from drifttools.analysis.classifiers.severity import yara_finding, yara_weight
from drifttools.analysis.classifiers.yara import RulesError, compile_rules
from drifttools.analysis.classifiers.yara_externals import STANDARD, file_externals, parse_define
from drifttools.api import offline_snapshot
from drifttools.models import Severity
from drifttools.progress import ProgressEvent, Stage
from tests.engine import docker
from tests.tarbuild import directory, file, layer_tar, legacy_archive
from tests.yara_sets import RuleTree, samples, write_rule_tree

FILES, RULES_PER_FILE = 220, 10


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> RuleTree:
    return write_rule_tree(tmp_path_factory.mktemp("rules") / "set", FILES, RULES_PER_FILE)


@pytest.fixture(scope="module")
def sample_files(tree: RuleTree) -> dict[str, bytes]:
    return samples(tree.root)


def _externals(path: str, data: bytes) -> dict:
    return file_externals(path, data, uid=0, owners={0: "root"}, complete=True)


def _found(matches: list[dict]) -> set[tuple[str, str]]:
    return {(m["namespace"], m["rule"]) for m in matches}


@pytest.fixture(scope="module", params=["yara-x", "yara-python"])
def compiled(request: pytest.FixtureRequest, tree: RuleTree):
    return compile_rules([tree.root], engine=request.param, bundled=False)


def test_the_whole_set_compiles(compiled, tree: RuleTree) -> None:
    assert compiled.problems == ()
    assert compiled.count == tree.rules
    # md5 is only hash.md5() and a meta key: not the external, not worked out per file
    assert compiled.externals == {"filename", "filepath", "extension", "filetype", "owner"}
    [report] = compiled.reports
    assert report.origin == str(tree.root) and report.files == len(tree.top_files)
    assert (report.compiled, report.rejected) == (tree.rules, 0)


def test_yara_python_matches_the_yara_command(
    tree: RuleTree, sample_files: dict[str, bytes], tmp_path: Path
) -> None:
    rules = compile_rules([tree.root], engine="yara-python", bundled=False)
    names = [f"{p.stem}:{p}" for p in tree.top_files]
    defaults = [a for key in STANDARD for a in ("-d", f"{key}=")]
    yarac = tmp_path / "set.yarc"
    subprocess.run(["yarac", *defaults, *names, str(yarac)], check=True, capture_output=True)
    hits = 0
    for path, data in sample_files.items():
        target = tmp_path / "sample"
        target.write_bytes(data)
        values = _externals(path, data)
        defines = [a for key, value in values.items() for a in ("-d", f"{key}={value}")]
        listed = subprocess.run(
            ["yara", "-C", "-e", *defines, str(yarac), str(target)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        expected = {tuple(line.split()[0].split(":", 1)) for line in listed if line}
        assert _found(rules.scan(data, values)) == expected, path
        hits += len(expected)
    assert hits > 20


def test_yara_x_matches_its_own_scanner(tree: RuleTree, sample_files: dict[str, bytes]) -> None:
    import yara_x

    rules = compile_rules([tree.root], engine="yara-x", bundled=False)
    compiler = yara_x.Compiler(relaxed_re_syntax=True)
    compiler.add_include_dir(str(tree.root))
    compiler.add_include_dir(str(tree.root / "family"))
    for key, value in STANDARD.items():
        compiler.define_global(key, value)
    for path in tree.top_files:
        compiler.new_namespace(path.stem)
        compiler.add_source(path.read_bytes().decode("latin-1"), origin=str(path))
    scanner = yara_x.Scanner(compiler.build())
    hits = 0
    for path, data in sample_files.items():
        values = _externals(path, data)
        for key, value in values.items():
            scanner.set_global(key, value)
        expected = {(r.namespace, r.identifier) for r in scanner.scan(data).matching_rules}
        assert _found(rules.scan(data, values)) == expected, path
        hits += len(expected)
    assert hits > 20


def test_includes_are_relative_and_in_the_cache_key(tree: RuleTree, tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "sub").mkdir(parents=True)
    (root / "index.yar").write_text('include "sub/a.yar"\n')
    (root / "sub" / "a.yar").write_text('include "b.yar"\nrule a { condition: b }\n')
    (root / "sub" / "b.yar").write_text('rule b { strings: $x = "one" condition: $x }\n')
    first = compile_rules([root], bundled=False, cache_dir=tmp_path / "c")
    assert [r.files for r in first.reports] == [1]  # sub/*.yar only through the index
    assert _found(first.scan(b"one")) == {("index", "a"), ("index", "b")}
    (root / "sub" / "b.yar").write_text('rule b { strings: $x = "two" condition: $x }\n')
    again = compile_rules([root], bundled=False, cache_dir=tmp_path / "c")
    assert again.sha256 != first.sha256
    assert _found(again.scan(b"one")) == set() and again.scan(b"two")
    (root / "sub" / "b.yar").write_text('include "a.yar"\n')  # a cycle: named, not a crash
    looped = compile_rules([root, tree.root / "set0001.yar"], bundled=False)
    assert any("include cycle" in p.message for p in looped.problems)


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_each_rule_once_beside_overlapping_index_files(tmp_path: Path, yara_engine: str) -> None:
    # Yara-Rules' shape: index.yar and an identical index_w_mobile.yar include every
    # folder's files, each folder also has its own *_index.yar, utils/ is in no index.
    root = tmp_path / "rules"
    for folder, names in {"malware": ("m1", "m2"), "crypto": ("c1",), "utils": ("url",)}.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            rule = f'rule {name} {{ strings: $a = "{name}-hit" condition: $a }}\n'
            (root / folder / f"{name}.yar").write_text(rule)
    indexed = ["malware/m1.yar", "malware/m2.yar", "crypto/c1.yar"]
    for index in ("index.yar", "index_w_mobile.yar"):
        (root / index).write_text("".join(f'include "./{f}"\n' for f in indexed))
    (root / "malware_index.yar").write_text('include "./malware/m1.yar"\n')
    (root / "crypto_index.yar").write_text('include "./crypto/c1.yar"\n')
    (root / "empty_index.yar").write_text("/* generated, nothing included */\n")
    rules = compile_rules([root], engine=yara_engine, bundled=False)
    assert rules.count == 4 and rules.problems == ()
    assert _found(rules.scan(b"m1-hit c1-hit url-hit")) == {
        ("index", "m1"),
        ("index", "c1"),
        ("url", "url"),
    }
    # an index file with rules of its own is compiled, even when its includes are not new
    own = 'include "./crypto/c1.yar"\nrule own { condition: c1 }\n'
    (root / "crypto_index.yar").write_text(own)
    again = compile_rules([root], engine=yara_engine, bundled=False)
    assert again.count == 6  # crypto_index: c1 again (its own namespace) and own


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_an_unknown_module_costs_only_the_rules_that_use_it(
    tmp_path: Path, yara_engine: str
) -> None:
    # An index expands its files in place, so an included file's import lands between the
    # rules of the files before it: the error is the import's, not the rule before it.
    (tmp_path / "a.yar").write_text('rule before { strings: $a = "before" condition: $a }\n')
    (tmp_path / "b.yar").write_text(
        'import "nosuchmodule"\n\n'
        "rule uses_it { condition: nosuchmodule.x == 1 }\n"
        'rule after { strings: $a = "after" condition: $a }\n'
    )
    (tmp_path / "index.yar").write_text('include "a.yar"\ninclude "b.yar"\n')
    (tmp_path / "alone.yar").write_text(
        'import "nosuchmodule"\nrule own { strings: $a = "own" condition: $a }\n'
    )
    rules = compile_rules([tmp_path], engine=yara_engine, bundled=False)
    named = {(p.rule, Path(p.origin).name) for p in rules.problems}
    assert ("(import)", "b.yar") in named and ("(import)", "alone.yar") in named
    assert ("uses_it", "b.yar") in named and all(p.rule != "before" for p in rules.problems)
    assert rules.count == 3
    assert [(r.compiled, r.rejected) for r in rules.reports] == [(3, 1)]
    assert _found(rules.scan(b"before after own")) == {
        ("index", "before"),
        ("index", "after"),
        ("alone", "own"),
    }


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_a_string_with_too_many_matches_is_no_python_warning(
    tmp_path: Path, yara_engine: str
) -> None:
    # libyara stops recording a string's matches past its limit (1,000,000) and says so;
    # yara-python would make that a RuntimeWarning (an error under pytest's -W error).
    (tmp_path / "many.yar").write_text('rule many { strings: $a = "a" condition: $a }\n')
    rules = compile_rules([tmp_path / "many.yar"], engine=yara_engine, bundled=False)
    assert _found(rules.scan(b"a" * 1_100_000)) == {("many", "many")}


def test_a_cached_set_reports_this_runs_seconds(tmp_path: Path, tree: RuleTree) -> None:
    from drifttools.analysis.classifiers import yara as module

    first = compile_rules([tree.root], bundled=False, cache_dir=tmp_path / "c")
    assert first.seconds > 0 and first.reports[0].seconds > 0
    module._COMPILED.clear()
    for _ in range(2):  # from the disk, then from the process
        cached = compile_rules([tree.root], bundled=False, cache_dir=tmp_path / "c")
        assert cached.seconds == 0.0
        assert cached.reports[0].seconds < first.reports[0].seconds
        assert (cached.reports[0].compiled, cached.reports[0].rejected) == (tree.rules, 0)


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_latin1_bytes_are_read_as_yara_reads_them(tmp_path: Path, yara_engine: str) -> None:
    rule = tmp_path / "latin.yar"
    rule.write_bytes(b'// \xe9t\xe9 \xff\nrule latin { strings: $a = "caf\xe9" condition: $a }\n')
    rules = compile_rules([rule], engine=yara_engine, bundled=False)
    sample = tmp_path / "s"
    for data in (b"un caf\xe9", b"un caf\xc3\xa9"):
        sample.write_bytes(data)
        cli = subprocess.run(["yara", str(rule), str(sample)], capture_output=True, text=True)
        assert bool(rules.scan(data)) == bool(cli.stdout.strip()), data
    assert rules.scan(b"un caf\xe9") and not rules.scan(b"un caf\xc3\xa9")


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_many_bad_rules_in_one_file_are_each_named(tmp_path: Path, yara_engine: str) -> None:
    good = "".join(f'rule ok{i} {{ strings: $a = "ok-{i}" condition: $a }}\n' for i in range(60))
    bad = "".join(f"rule bad{i} {{ condition: $nope{i} }}\n" for i in range(40))
    (tmp_path / "mixed.yar").write_text(good + bad + "rule last { condition: ok1 }\n")
    (tmp_path / "fine.yar").write_text('rule fine { strings: $a = "fine" condition: $a }\n')
    rules = compile_rules([tmp_path], engine=yara_engine, bundled=False)
    assert sorted(p.rule for p in rules.problems) == sorted(f"bad{i}" for i in range(40))
    assert all(":" in p.message and p.origin.endswith("mixed.yar") for p in rules.problems)
    assert rules.count == 62
    assert _found(rules.scan(b"ok-1 fine")) == {
        ("mixed", "ok1"),
        ("mixed", "last"),
        ("fine", "fine"),
    }


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_precompiled_rules_and_the_wrong_engine(tmp_path: Path, yara_engine: str) -> None:
    (tmp_path / "p.yar").write_text('rule pre { strings: $a = "pre-x" condition: $a }\n')
    if yara_engine == "yara-python":
        import yara

        yara.compile(str(tmp_path / "p.yar")).save(str(tmp_path / "p.yarc"))
    else:
        import yara_x

        with open(tmp_path / "p.yarc", "wb") as out:
            yara_x.compile((tmp_path / "p.yar").read_text()).serialize_into(out)
    rules = compile_rules([tmp_path / "p.yarc"], engine=yara_engine)
    where = _externals("/srv/p", b"..pre-x..")  # externals the compiled rules lack: ignored
    assert _found(rules.scan(b"..pre-x..", where)) == {("default", "pre")}
    assert rules.reports[-1].precompiled and rules.count == 16  # the bundled rules
    other = "yara-x" if yara_engine == "yara-python" else "yara-python"
    with pytest.raises(RulesError, match=f"compiled for {yara_engine}"):
        compile_rules([tmp_path / "p.yarc"], engine=other)


def test_defines_and_tag_and_identifier_filters(tree: RuleTree) -> None:
    assert parse_define("env=prod") == ("env", "prod")
    assert parse_define("n=3") == ("n", 3) and parse_define("on=true") == ("on", True)
    with pytest.raises(RulesError):
        parse_define("no value")
    data, where = b"marker-1-1 marker-1-2", {"filepath": "/srv/a"}
    everything = compile_rules([tree.root], bundled=False)
    assert {m["rule"] for m in everything.scan(data, where)} == {"r1_1", "r1_2"}
    tagged = compile_rules([tree.root], bundled=False, tags=["tag2"])
    assert {m["rule"] for m in tagged.scan(data, where)} == {"r1_2"}
    named = compile_rules([tree.root], bundled=False, identifiers=["r1_1"])
    assert {m["rule"] for m in named.scan(data, where)} == {"r1_1"}
    fixed = compile_rules([tree.root], bundled=False, defines={"filename": "special.txt"})
    assert "r2_1" in {m["rule"] for m in fixed.scan(b"", {"filename": "other"})}


def _match(meta: dict, namespace: str = "ns", tags: tuple = ()) -> dict:
    return {"rule": "r", "namespace": namespace, "tags": list(tags), "meta": meta}


def test_severity_from_the_rules_own_weight() -> None:
    cases = {
        (("severity", "critical"),): Severity.CRITICAL,
        (("severity", 100),): Severity.CRITICAL,
        (("severity", 1),): Severity.LOW,  # Elastic's EICAR
        (("score", 75),): Severity.HIGH,
        (("score", "50"),): Severity.MEDIUM,
        (("threat_level", 5),): Severity.CRITICAL,
        (("threat_level", 3),): Severity.MEDIUM,
        (("author", "x"),): None,
    }
    for meta, expected in cases.items():
        assert yara_weight(dict(meta)) is expected, meta
    assert yara_finding(_match({"score": 80})).severity is Severity.HIGH
    generic = [
        yara_finding(_match({})),
        yara_finding(_match({"score": 90}, tags=("Generic",))),
        yara_finding(_match({"severity": "high"}, namespace="capabilities_index")),
    ]
    assert all(f.severity is Severity.LOW and "yara-generic" in f.tags for f in generic)
    context = yara_finding(_match({"severity": "critical"}), in_image=True)
    assert context.severity is Severity.LOW and "in-image" in context.tags
    assert "context, not drift" in context.detail


@pytest.mark.parametrize("yara_engine", ["yara-x", "yara-python"])
def test_generic_by_the_folder_a_rule_was_written_in(tmp_path: Path, yara_engine: str) -> None:
    # Yara-Rules' shape: index.yar brings every folder's rules into namespace "index"; a
    # rule written in crypto/ or utils/ is generic however high its weight, one in
    # malware/ is not, and where each rule was written survives the compiled-rules cache.
    root = tmp_path / "rules"
    files = {"malware/m1.yar": "m1", "crypto/c1.yar": "c1", "utils/url.yar": "url"}
    for path, name in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        rule = f'rule {name} {{ meta: score = 90 strings: $a = "{name}-hit" condition: $a }}\n'
        (root / path).write_text(rule)
    (root / "index.yar").write_text("".join(f'include "./{f}"\n' for f in files))
    cache = tmp_path / "cache"
    for _ in ("compiled", "from the cache"):
        rules = compile_rules([root], engine=yara_engine, bundled=False, cache_dir=cache)
        found = rules.scan(b"m1-hit c1-hit url-hit")
        assert {m["namespace"] for m in found} == {"index"}
        origins = {m["rule"]: rules.origin(m) for m in found}
        assert origins == {
            "m1": "rules/malware/m1.yar",
            "c1": "rules/crypto/c1.yar",
            "url": "rules/utils/url.yar",
        }
        severity = {m["rule"]: yara_finding(m, origin=rules.origin(m)).severity for m in found}
        assert severity == {"m1": Severity.CRITICAL, "c1": Severity.LOW, "url": Severity.LOW}
    assert rules.seconds == 0.0  # the second came from the cache
    for given in (root / "crypto", root / "crypto" / "c1.yar"):  # the folder given is named
        alone = compile_rules([given], engine=yara_engine, bundled=False)
        [match] = alone.scan(b"c1-hit")
        assert match["namespace"] == "c1" and alone.origin(match) == "crypto/c1.yar"
        assert yara_finding(match, origin=alone.origin(match)).severity is Severity.LOW
    assert rules.origin({"namespace": "index", "rule": "nope"}) == ""


def test_classification_sets_externals_and_keeps_image_bytes_as_context(tmp_path: Path) -> None:
    payload = b"drifttools-context-marker\n"
    passwd = b"root:x:0:0::/root:/bin/sh\nsvc:x:1001:1001::/:/bin/sh\n"
    members = [directory("bin"), file("bin/tool", payload, 0o755), directory("etc")]
    members += [file("etc/passwd", passwd), directory("srv")]
    image = legacy_archive(tmp_path / "image.tar", [layer_tar(members)]).path
    rootfs = tmp_path / "rootfs"
    for folder in ("bin", "etc", "srv"):
        (rootfs / folder).mkdir(parents=True)
        (rootfs / folder).chmod(0o755)
    rootfs.chmod(0o755)
    (rootfs / "bin" / "tool").write_bytes(payload)  # the image's bytes, another mode
    (rootfs / "bin" / "tool").chmod(0o700)
    (rootfs / "etc" / "passwd").write_bytes(passwd)
    (rootfs / "srv" / "new").write_bytes(payload)
    os.chown(rootfs / "srv" / "new", 1001, 1001)
    rules = tmp_path / "mine.yar"
    rules.write_text(
        'rule marker { meta: score = 95 strings: $a = "drifttools-context-marker" '
        "condition: $a }\n"
        'rule where { meta: severity = "medium" condition: filepath == "/srv/new" and '
        'filename == "new" and owner == "svc" and filetype == "UNKNOWN" }\n'
    )
    baseline = load_image(image)
    snapshot = offline_snapshot(rootfs)
    report = classify(
        diff_snapshot(snapshot, baseline), snapshot, baseline, ClassifyOptions(rules=[rules])
    )
    changes = {c.path: c for c in report.changes}
    new = changes["/srv/new"]
    assert {m["rule"] for m in new.yara} == {"marker", "where"}
    assert new.severity is Severity.CRITICAL
    tool = changes["/bin/tool"]
    assert {m["rule"] for m in tool.yara} == {"marker"}  # not where: its own path
    [finding] = [f for f in tool.findings if f.rule == "yara:mine/marker"]
    assert "in-image" in finding.tags and finding.severity is Severity.LOW
    assert tool.severity.rank <= Severity.LOW.rank
    sets = report.classification["yara"]["sets"]
    assert [(s["origin"], s["compiled"], s["rejected"]) for s in sets][-1] == (str(rules), 2, 0)


def test_a_large_failing_index_is_compiled_a_few_times_not_once_per_level(
    tmp_path: Path,
) -> None:
    from drifttools.analysis.classifiers import yara_engines

    # Yara-Rules' shape: one index of thousands of rules with two bad ones, beside many
    # small files of which some fail: the index is compiled k + 3 times (the set, alone,
    # once per rule it loses, the final set), not once per level of the bisection.
    good = "".join(f'rule i{n} {{ strings: $a = "i-{n}" condition: $a }}\n' for n in range(3000))
    (tmp_path / "index.yar").write_text(
        good + "rule bad1 { condition: $x }\nrule bad2 { condition: nope }\n"
    )
    for n in range(40):
        condition = "$y" if n % 8 == 0 else "true"
        (tmp_path / f"f{n:02}.yar").write_text(f"rule f{n} {{ condition: {condition} }}\n")
    engine = yara_engines.YaraPython()
    built: list[bool] = []  # whether each compilation held the index
    real = engine._build

    def build(sources, externals):
        sources = list(sources)
        built.append(any(name == "index" for name, _ in sources))
        return real(sources, externals)

    engine._build = build  # type: ignore[method-assign]
    from drifttools.analysis.classifiers.yara_sources import read_rules

    result = engine.compile(read_rules(tmp_path), STANDARD, lambda done, total: None)
    assert sorted(p.rule for p in result.problems) == sorted(
        ["bad1", "bad2", *(f"f{n}" for n in range(0, 40, 8))]
    )
    assert sum(built) == 2 + 3


@pytest.mark.parametrize("engine", ["yara-x", "yara-python"])
def test_compiling_reports_its_progress_file_by_file(tmp_path: Path, engine: str) -> None:
    tree = write_rule_tree(tmp_path / "rules", files=12, rules_per_file=3)
    events: list[ProgressEvent] = []
    compile_rules([tree.root], engine=engine, progress=events.append)
    steps = [(e.done, e.total) for e in events if e.stage is Stage.COMPILE_RULES]
    assert steps[0][0] == 0 and steps[-1][0] == steps[-1][1] >= 12
    assert [done for done, _ in steps] == sorted(done for done, _ in steps)


def test_a_process_running_the_images_executable_is_context_not_drift(
    busybox_image: dict, container, tmp_path: Path
) -> None:
    """The same rule on the same bytes: low and in-image for the image's /bin/busybox, raised
    for the copy an intruder runs from /tmp."""
    name = container(busybox_image["tag"])
    # busybox picks its applet by the name it runs as: the copy runs as "sleep"; the exec
    # returns once it is running
    docker(
        "exec",
        name,
        "sh",
        "-c",
        "cp /bin/busybox /tmp/sleep && (/tmp/sleep 600 &) && i=0; while [ $i -lt 100 ]"
        " && ! grep -qs /tmp/sleep /proc/[0-9]*/cmdline; do sleep 0.05; i=$((i+1)); done",
    )
    rules = tmp_path / "busybox.yar"
    rules.write_text(
        'rule busybox_seen { meta: score = 80 strings: $a = "BusyBox v" condition: $a }\n'
    )
    report = drifttools.diff(name, classification=ClassifyOptions(rules=[rules]))
    by_exe = {p.exe: p for p in report.processes if p.yara}
    image_own, dropped = by_exe["/bin/busybox"], by_exe["/tmp/sleep"]
    [context] = [f for f in image_own.findings if f.rule == "yara:busybox/busybox_seen"]
    assert "in-image" in context.tags and context.severity is Severity.LOW
    assert image_own.severity.rank <= Severity.LOW.rank
    [drift] = [f for f in dropped.findings if f.rule == "yara:busybox/busybox_seen"]
    assert "in-image" not in drift.tags and drift.severity.rank >= Severity.HIGH.rank

"""nftables inside a container's own network namespace, set from the host.

``nsenter --net=/proc/<pid>/ns/net nft ...`` runs the host's ``nft`` (Debian's nftables)
with only the network namespace entered: nothing is executed in the container, its
filesystem is not touched, and the rules hold for that one container (one replica of a
Deployment, not all of them), whatever the runtime. The table is replaced in one
transaction (idempotent) and read back as JSON to prove it is in place.

Docker's embedded DNS (``127.0.0.11`` on user networks) answers on loopback but forwards
the query out of the host: it is dropped too, so a name lookup cannot carry data out.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from drifttools.errors import ResponseFailed, ResponseRefused

TABLE = "drifttools_isolation"
FAMILY = "inet"
#: Docker's embedded DNS server, reached over loopback, answered from the host.
EMBEDDED_DNS = "127.0.0.11"
_HOOKS = ("input", "output", "forward")
RULESET = f"""\
table {FAMILY} {TABLE}
delete table {FAMILY} {TABLE}
table {FAMILY} {TABLE} {{
  chain input {{
    type filter hook input priority -300; policy drop;
    iif "lo" accept
  }}
  chain output {{
    type filter hook output priority -300; policy drop;
    oif "lo" ip daddr {EMBEDDED_DNS} drop
    oif "lo" accept
  }}
  chain forward {{
    type filter hook forward priority -300; policy drop;
  }}
}}
"""
_TIMEOUT = 30


def namespace_path(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


class Namespace:
    """A container's network namespace, held open while rules are set and read: once it is
    open (and the container is seen still running with that pid), a pid reused meanwhile
    cannot turn the rules onto another process's network. A context manager."""

    def __init__(self, pid: int, current_pid: Callable[[], int | None]) -> None:
        self.pid = pid
        try:
            self.fd = os.open(namespace_path(pid), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            why = exc.strerror or exc
            raise ResponseRefused(f"network namespace of pid {pid} not readable: {why}") from exc
        if current_pid() != pid:
            os.close(self.fd)
            raise ResponseRefused(f"the container no longer runs as pid {pid}: plan again")

    @property
    def path(self) -> str:
        """The namespace as ``nsenter`` (given the open descriptor) reaches it."""
        return f"/proc/self/fd/{self.fd}"

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _identity(path: str | int) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _host_namespaces() -> set[tuple[int, int]]:
    """The host's network namespace (pid 1's) and ours, those that can be read here."""
    found = set()
    for path in ("/proc/1/ns/net", "/proc/self/ns/net"):
        try:
            found.add(_identity(path))
        except OSError:
            continue  # pid 1 hidden from us (a sandbox): ours still counts
    return found


def check_own_namespace(pid: int, host_network: bool, opened: Namespace | None = None) -> None:
    """Refuse a container that shares the host's network namespace (or ours): rules there
    would cut the node, not the container. ``opened``: the namespace as held open."""
    if host_network:
        raise ResponseRefused("it uses the host's network: isolating it would cut the host")
    try:
        own = _identity(opened.fd if opened is not None else namespace_path(pid))
    except OSError as exc:
        why = exc.strerror or exc
        raise ResponseRefused(f"network namespace of pid {pid} not readable: {why}") from exc
    if own in _host_namespaces():
        raise ResponseRefused(
            f"pid {pid} is in the host's network namespace: isolating it would cut the host"
        )


def nft(namespace: Namespace, *args: str, script: str | None = None) -> str:
    """``nft ARGS`` in ``namespace``; its stdout."""
    command = ["nsenter", f"--net={namespace.path}", "nft", *args]
    try:
        done = subprocess.run(
            command,
            input=script,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
            pass_fds=(namespace.fd,),
        )
    except FileNotFoundError as exc:
        raise ResponseFailed(
            f"{exc.filename}: not found (install nftables and util-linux)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ResponseFailed(f"nft {' '.join(args)}: no answer in {_TIMEOUT} s") from exc
    if done.returncode != 0:
        raise ResponseFailed(f"nft {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def read_back(namespace: Namespace) -> dict[str, Any] | None:
    """The isolation table as the kernel has it (chains, hooks, policies, rules), or None."""
    listing = json.loads(nft(namespace, "-j", "list", "tables") or "{}")
    tables = [item["table"] for item in listing.get("nftables", []) if "table" in item]
    if not any(t.get("family") == FAMILY and t.get("name") == TABLE for t in tables):
        return None
    document = json.loads(nft(namespace, "-j", "list", "table", FAMILY, TABLE))
    chains: dict[str, dict[str, Any]] = {}
    rules = 0
    for item in document.get("nftables", []):
        if "chain" in item:
            chain = item["chain"]
            chains[chain["name"]] = {
                "hook": chain.get("hook"),
                "policy": chain.get("policy"),
                "priority": chain.get("prio"),
            }
        elif "rule" in item:
            rules += 1
    text = nft(namespace, "list", "table", FAMILY, TABLE)
    return {"table": f"{FAMILY} {TABLE}", "chains": chains, "rules": rules, "listing": text}


def holds(state: Mapping[str, Any] | None) -> bool:
    """Whether a read-back table drops everything on every hook (loopback aside)."""
    if state is None:
        return False
    chains = state["chains"]
    return all(chains.get(hook, {}).get("policy") == "drop" for hook in _HOOKS)


def isolate(namespace: Namespace) -> dict[str, Any]:
    """Put the isolation table in place (replacing one already there) and read it back."""
    nft(namespace, "-f", "-", script=RULESET)
    state = read_back(namespace)
    if not holds(state):
        raise ResponseFailed(f"isolation rules not in place after nft ran: {state}")
    assert state is not None
    return state


def release(namespace: Namespace) -> bool:
    """Remove the isolation table; False when it was not there."""
    if read_back(namespace) is None:
        return False
    nft(namespace, "delete", "table", FAMILY, TABLE)
    if read_back(namespace) is not None:
        raise ResponseFailed("isolation table still present after it was deleted")
    return True

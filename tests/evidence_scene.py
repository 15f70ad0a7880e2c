"""The scene evidence bundles are taken of (conftest's ``evidence_scene`` runs it).

FROM scratch: busybox and the static memfd helper. The container runs a fileless
process from a memfd and a binary it dropped into /tmp, and holds a file with a
hostile name and a symlink.
"""

from __future__ import annotations

SCENE_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY memfd_exec /bin/memfd_exec
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /tmp /etc && echo "root:x:0:0::/:/bin/sh" > /etc/passwd
"""

#: Drops a binary and runs it, runs busybox from a memfd, leaves a hostile name and a symlink.
SCENE = r"""
cp /bin/busybox /tmp/busybox.drop
printf 'x' > "/tmp/pi|pe%41$(printf '\033')[2J"
ln -s /etc/passwd /tmp/link
memfd_exec /bin/busybox sleep 100003 &
/tmp/busybox.drop sleep 100004 &
exec sleep 100000
"""

#: The name of the file SCENE writes with a pipe, a percent escape and an escape sequence.
HOSTILE = "/tmp/pi|pe%41\x1b[2J"

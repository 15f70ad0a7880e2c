"""containerd's gRPC API, through our own client over ``grpcio``: the only module that speaks it.

Every call carries the ``containerd-namespace`` metadata. The calls are built from the
service descriptors of the generated messages (``_api``); no gRPC stub code is
generated. gRPC errors leave this module as the library's own exceptions, mapped once
here (:meth:`ContainerdClient.error`): ``NOT_FOUND`` is always
:class:`~drifttools.errors.ContainerNotFound`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any, BinaryIO

import grpc
from google.protobuf import message_factory

from drifttools.acquisition.runtimes.chunks import buffered
from drifttools.acquisition.runtimes.containerd._api import (
    containers_pb2,
    content_pb2,
    images_pb2,
    introspection_pb2,
    namespace_pb2,
    snapshots_pb2,
    tasks_pb2,
    version_pb2,
)
from drifttools.errors import ContainerNotFound, PermissionDenied, RuntimeUnavailable

#: Where containerd listens, tried in order when no address is given.
DEFAULT_SOCKETS = (
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/run/docker/containerd/containerd.sock",
)
MAX_MESSAGE = 64 << 20
_TIMEOUT = 30.0
_SERVICES = {
    "containers": (containers_pb2, "Containers"),
    "tasks": (tasks_pb2, "Tasks"),
    "images": (images_pb2, "Images"),
    "content": (content_pb2, "Content"),
    "snapshots": (snapshots_pb2, "Snapshots"),
    "namespaces": (namespace_pb2, "Namespaces"),
    "version": (version_pb2, "Version"),
    "introspection": (introspection_pb2, "Introspection"),
}


def discover_socket(address: str | None = None) -> str:
    """The containerd socket: ``address``, ``$CONTAINERD_ADDRESS``, or the first well-known
    socket that exists."""
    explicit = address or os.environ.get("CONTAINERD_ADDRESS")
    if explicit:
        path = explicit.removeprefix("unix://")
        if not os.path.exists(path):
            raise RuntimeUnavailable(f"no containerd socket at {path}")
        return path
    for candidate in DEFAULT_SOCKETS:
        try:
            if stat.S_ISSOCK(os.stat(candidate).st_mode):
                return candidate
        except OSError:
            continue
    raise RuntimeUnavailable(
        "no containerd socket found (tried " + ", ".join(DEFAULT_SOCKETS) + "); pass its address"
    )


class ContainerdClient:
    """Unary and server-streaming calls on containerd's services, namespaced."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self._channel = grpc.insecure_channel(
            f"unix://{socket}",
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.default_authority", "localhost"),
            ],
        )
        self._callables: dict[tuple[str, str], tuple[Any, Any]] = {}

    def close(self) -> None:
        self._channel.close()

    def call(
        self, service: str, method: str, namespace: str | None = None, what: str = "", **fields: Any
    ) -> Any:
        """One unary call; ``what`` names the object in a not-found error."""
        call, request = self._method(service, method)
        try:
            return call(request(**fields), metadata=_metadata(namespace), timeout=_TIMEOUT)
        except grpc.RpcError as exc:
            raise self.error(exc, what) from exc

    def stream(
        self, service: str, method: str, namespace: str | None = None, what: str = "", **fields: Any
    ) -> Iterator[Any]:
        """The messages of a server-streaming call, errors mapped as they arrive."""
        call, request = self._method(service, method)
        try:
            yield from call(request(**fields), metadata=_metadata(namespace))
        except grpc.RpcError as exc:
            raise self.error(exc, what) from exc

    def read_content(self, namespace: str, digest: str) -> BinaryIO:
        """A content store blob as a file object, over ``Content.Read``'s stream."""
        chunks = self.stream("content", "Read", namespace, f"content {digest}", digest=digest)
        return buffered(chunk.data for chunk in chunks)

    def error(self, exc: grpc.RpcError, what: str = "") -> Exception:
        """The library's exception for a failed call."""
        call = exc if isinstance(exc, grpc.Call) else None  # what a failed call raises
        code = call.code() if call else None
        detail = call.details() if call else str(exc)
        where = f"containerd at {self.socket}"
        if code == grpc.StatusCode.NOT_FOUND:
            return ContainerNotFound(f"{what or 'not found'} on {where}: {detail}")
        if code == grpc.StatusCode.PERMISSION_DENIED or "ermission denied" in str(detail):
            return PermissionDenied(f"permission denied talking to {where}")
        if code == grpc.StatusCode.UNAVAILABLE:
            return RuntimeUnavailable(f"cannot reach {where}: is containerd running? ({detail})")
        return RuntimeUnavailable(f"{where}: {code.name if code else 'error'}: {detail}")

    def _method(self, service: str, method: str) -> tuple[Any, Any]:
        key = (service, method)
        if key not in self._callables:
            module, name = _SERVICES[service]
            descriptor = module.DESCRIPTOR.services_by_name[name].methods_by_name[method]
            request = message_factory.GetMessageClass(descriptor.input_type)
            response = message_factory.GetMessageClass(descriptor.output_type)
            path = f"/{descriptor.containing_service.full_name}/{method}"
            factory = (
                self._channel.unary_stream
                if descriptor.server_streaming
                else self._channel.unary_unary
            )
            call = factory(
                path,
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            self._callables[key] = (call, request)
        return self._callables[key]


def _metadata(namespace: str | None) -> tuple[tuple[str, str], ...]:
    return (("containerd-namespace", namespace),) if namespace else ()

"""The little of protobuf's wire format drifttools reads itself: the varint fields of one
message (CRIU's pstree entries, Docker's ``local`` log driver records)."""

from __future__ import annotations


def varint_fields(message: bytes) -> dict[int, int]:
    """The varint fields of a protobuf message (the first value of each field number)."""
    fields: dict[int, int] = {}
    at = 0
    while at < len(message):
        key, at = _varint(message, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(message, at)
            fields.setdefault(number, value)
        elif wire == 2:
            length, at = _varint(message, at)
            at += length
        elif wire == 5:
            at += 4
        elif wire == 1:
            at += 8
        else:
            break
    return fields


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while at < len(data):
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return value, at

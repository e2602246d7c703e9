# SPDX-License-Identifier: BSD-3-Clause
"""reply_shape.py — the check of a successful control reply's field types against the protocol's table
(reply_shapes.json beside this file, docs/control.md), before the client hands the reply on.

The table is the one libnbdsnap compiles in (libnbdsnap/reply_shape.cpp walks it the same way and words its
problems the same). Fields left out or added pass (a newer server may add fields, or drop one a client can do
without); a field present with another type, or a field the table marks required missing, is a reply this
client does not understand: read tolerantly, a CBT range whose length is "64K" or -4096 would be a change an
incremental backup copies wrongly or skips.
"""
import json
import os

_TYPE_NAMES = {"text": "a string", "count": "a number of 0 or more", "integer": "an integer",
               "flag": "true or false", "list": "an array", "object": "an object"}


def _segments(path):
    """"ranges[].offset" -> ["ranges", "[]", "offset"]; "runs[].[]" -> ["runs", "[]", "[]"]."""
    segments = []
    for segment in path.split("."):
        if len(segment) > 2 and segment.endswith("[]"):
            segments += [segment[:-2], "[]"]
        else:
            segments.append(segment)
    return segments


def _load(path):
    """{command: [(segments, kind, required)]} from the table at `path`, "@NAME" entries expanded."""
    with open(path, encoding="utf-8") as f:
        table = json.load(f)

    def add(fields, prefix, shape):
        for path_, kind in fields.items():
            if kind.startswith("@"):
                add(table["objects"][kind[1:]], prefix + path_, shape)
            else:
                required = kind.endswith("!")
                kind = kind.rstrip("!")
                if kind not in _TYPE_NAMES:
                    raise ValueError(f"{path}: unknown kind '{kind}' of '{prefix + path_}'")
                shape.append((_segments(prefix + path_), kind, required))
        return shape
    return {command: add(fields, "", []) for command, fields in table["commands"].items()}


_SHAPES = _load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "reply_shapes.json"))


def _type_of(value):
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return "something else"


def _has_kind(value, kind):
    if kind == "text":
        return isinstance(value, str)
    if kind == "flag":
        return isinstance(value, bool)
    if kind in ("count", "integer"):
        return isinstance(value, int) and not isinstance(value, bool) and (kind == "integer" or value >= 0)
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def _check_at(value, segments, at, shown, kind, required):
    if at == len(segments):
        return "" if _has_kind(value, kind) else f"'{shown}' is {_type_of(value)}, expected {_TYPE_NAMES[kind]}"
    segment = segments[at]
    if segment == "[]":
        if not isinstance(value, list):
            return ""  # the list's own entry names that
        for i, element in enumerate(value):
            problem = _check_at(element, segments, at + 1, f"{shown}[{i}]", kind, required)
            if problem:
                return problem
        return ""
    if not isinstance(value, dict):
        return ""  # the enclosing object's own entry names that
    following = f"{shown}.{segment}" if shown else segment
    if segment not in value:
        return f"'{following}' is missing" if required and at + 1 == len(segments) else ""
    return _check_at(value[segment], segments, at + 1, following, kind, required)


def reply_shape_problem(command, result):
    """What is wrong with `result` (a successful reply to `command`, without or with its "ok"), or "":
    "'origins' is a number, expected an array", "'ranges[0].length' is missing". Commands the table does not
    know are not checked."""
    if not isinstance(result, dict):
        return f"the reply is {_type_of(result)}, expected an object"
    for segments, kind, required in _SHAPES.get(command, ()):
        problem = _check_at(result, segments, 0, "", kind, required)
        if problem:
            return problem
    return ""

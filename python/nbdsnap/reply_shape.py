# SPDX-License-Identifier: BSD-3-Clause
"""reply_shape.py — the check of a successful control reply's field types against the protocol's table
(reply_shapes.json beside this file, docs/control.md), before the client hands the reply on.

The table is the one libnbdsnap compiles in (libnbdsnap/reply_shape.cpp walks it the same way and words its
problems the same). Fields left out or added pass (a newer server may add fields, or drop one a client can do
without); a field present with another type, or a field the table marks required missing, is a reply this
client does not understand: read tolerantly, a CBT range whose length is "64K" or -4096 would be a change an
incremental backup copies wrongly or skips.
"""
import itertools
import json
import os
import re

_TYPE_NAMES = {"text": "a string", "count": "a number of 0 or more", "integer": "an integer",
               "flag": "true or false", "list": "an array", "object": "an object",
               "count_pair": "an array of two numbers of 0 or more"}
# JSON numbers as libnbdsnap reads them (nlohmann::json): integers of 64 bits, signed or not; anything else,
# 2^64 included, is a float to it.
_COUNT_END, _INTEGER_LOW, _INTEGER_END = 1 << 64, -(1 << 63), 1 << 63


def _segments(path):
    """"ranges[].offset" -> ["ranges", "[]", "offset"]; "cbt.checkpoints{}" -> ["cbt", "checkpoints", "{}"]."""
    segments = []
    for segment in path.split("."):
        if len(segment) > 2 and segment[-2:] in ("[]", "{}"):
            segments += [segment[:-2], segment[-2:]]
        else:
            segments.append(segment)
    return segments


def _load(path):
    """({command: [(segments, kind, required)]}, max_depth) from the table at `path`, "@NAME" entries
    expanded."""
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
    return {command: add(fields, "", []) for command, fields in table["commands"].items()}, table["max_depth"]


_SHAPES, _MAX_DEPTH = _load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "reply_shapes.json"))


def _type_of(value):
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int) and not _INTEGER_LOW <= value < _COUNT_END or isinstance(value, float):
        return "a number that is not a 64-bit integer"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return "something else"


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _COUNT_END


def _has_kind(value, kind):
    if kind == "text":
        return isinstance(value, str)
    if kind == "flag":
        return isinstance(value, bool)
    if kind == "count":
        return _is_count(value)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) and _INTEGER_LOW <= value < _INTEGER_END
    if kind == "count_pair":
        return isinstance(value, list) and len(value) == 2 and _is_count(value[0]) and _is_count(value[1])
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
    if segment == "{}":
        if not isinstance(value, dict):
            return ""  # the object's own entry names that
        for key, member in value.items():
            problem = _check_at(member, segments, at + 1, f"{shown}.{key}", kind, required)
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


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(rb'[^\[\]{}]')


def reply_nesting_problem(line):
    """What is wrong with a reply line (bytes) before it is parsed, or "": lists and objects nested deeper than
    the table's max_depth, as libnbdsnap refuses them (json.loads recurses: about 1,000 levels raise
    RecursionError). The strings are cut out and the brackets counted, at the regular expressions' speed."""
    brackets = _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", line))
    depth = max(itertools.accumulate(1 if c in b"[{" else -1 for c in brackets), default=0)
    if depth > _MAX_DEPTH:
        return f"the reply nests lists and objects deeper than {_MAX_DEPTH} levels"
    return ""

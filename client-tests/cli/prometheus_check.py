#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# prometheus_check.py — checks a file in the Prometheus text exposition format (0.0.4) as node_exporter's
# textfile collector reads it, and prints its samples as JSON for the test to compare.
#
# Checked: every line is a comment (# HELP / # TYPE), or a sample `name{labels} value`; names match
# [a-zA-Z_:][a-zA-Z0-9_:]*; each family has one HELP and one TYPE, both before its first sample and HELP first;
# counters end in _total; label values are quoted with only \\, \" and \n as escapes; values are floats; the
# file ends with a line feed. Usage: prometheus_check.py FILE  (exit 1 with a message on the first fault).
import json
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
FLOAT = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf)"


def fail(line_number, line, why):
    sys.exit(f"line {line_number}: {why}: {line!r}")


def parse_labels(text, line_number, line):
    """{name: unescaped value} of `a="x",b="y"`, checking the escapes."""
    labels, i = {}, 0
    while i < len(text):
        m = re.match(LABEL_NAME + r'="', text[i:])
        if not m:
            fail(line_number, line, "a label is not name=\"value\"")
        name = m.group(0)[:-2]
        i += m.end()
        value = []
        while True:
            if i >= len(text):
                fail(line_number, line, "a label value is not closed")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    fail(line_number, line, f"bad escape \\{nxt} in a label value")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                fail(line_number, line, "a raw line feed in a label value")
            else:
                value.append(c)
                i += 1
        if name in labels:
            fail(line_number, line, f"label {name} twice")
        labels[name] = "".join(value)
        if i < len(text):
            if text[i] != ",":
                fail(line_number, line, "labels are not separated by ','")
            i += 1
    return labels


def check(text):
    if text and not text.endswith("\n"):
        sys.exit("the file does not end with a line feed")
    helps, types, sampled, samples = set(), {}, set(), []
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (" + NAME + r") (.*)", line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    fail(number, line, "a malformed HELP or TYPE line")
                continue  # another comment
            kind, name, rest = m.groups()
            if name in sampled:
                fail(number, line, f"{kind} of {name} after its samples")
            if kind == "HELP":
                if name in helps:
                    fail(number, line, f"second HELP of {name}")
                if re.search(r"\\[^\\n]", rest):
                    fail(number, line, "bad escape in HELP text")
                helps.add(name)
            else:
                if name in types:
                    fail(number, line, f"second TYPE of {name}")
                if name not in helps:
                    fail(number, line, f"TYPE of {name} before its HELP")
                if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    fail(number, line, f"unknown type {rest}")
                if rest == "counter" and not name.endswith("_total"):
                    fail(number, line, f"counter {name} does not end in _total")
                types[name] = rest
            continue
        m = re.fullmatch(r"(" + NAME + r")(?:\{(.*)\})? (" + FLOAT + r")(?: -?[0-9]+)?", line)
        if not m:
            fail(number, line, "not a sample line")
        name, label_text, value = m.groups()
        if name not in types or name not in helps:
            fail(number, line, f"sample of {name} without HELP and TYPE before it")
        if types[name] == "counter" and float(value) < 0:
            fail(number, line, "a negative counter")
        sampled.add(name)
        samples.append({"name": name, "labels": parse_labels(label_text or "", number, line), "value": float(value)})
    return samples


def self_test():
    """The checker itself refuses what it must (run once per test: a checker that accepts anything checks nothing)."""
    good = '# HELP a_total x\n# TYPE a_total counter\na_total{o="q\\"b\\\\s\\nl"} 1\n'
    assert check(good)[0]["labels"]["o"] == 'q"b\\s\nl'
    for bad in ('# TYPE a_total counter\na_total 1\n',                          # TYPE without HELP
                '# HELP a x\n# TYPE a counter\na 1\n',                           # counter without _total
                '# HELP a x\n# TYPE a gauge\na{o="x\\q"} 1\n',                   # bad escape
                '# HELP a x\n# TYPE a gauge\na 1\n# HELP a y\n',                 # HELP after samples
                '# HELP a x\n# TYPE a gauge\na{o="x"} one\n'):                   # not a number
        try:
            check(bad)
        except SystemExit:
            continue
        raise AssertionError(f"checker accepted {bad!r}")


if __name__ == "__main__":
    self_test()
    with open(sys.argv[1], encoding="utf-8") as f:
        print(json.dumps(check(f.read())))

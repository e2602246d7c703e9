# SPDX-License-Identifier: BSD-3-Clause
"""cbt_page.py — whether one page of a CBT map (a reply to cbt-map or cbt-raw-map) is consistent in itself and
with the request, as docs/control.md ("Paging") promises: ranges sorted, disjoint, not empty, within the device
and the bytes asked for; runs of at least one block that cover exactly the whole blocks between the page's
offset and next_offset. A backup agent copies what the map says: a page that breaks these would make it miss
data or read past the device, so the call fails instead (protocol_error).

libnbdsnap checks the same rules in the same words (libnbdsnap/cbt_page_check.cpp). Replies reach here
already checked against the reply shapes (reply_shape.py), so every present field has its type.
"""

_NO_END = 1 << 64


def _span(offset, end):
    return f"[{offset}, {end})"


def _ranges_problem(page, asked_offset, asked_end, pages):
    device_size = page.get("device_size")
    next_offset = page.get("next_offset") if pages else None
    previous_end = 0
    for index, item in enumerate(page["ranges"]):
        offset, length = item["offset"], item["length"]
        which = f"range {index}"
        if length == 0:
            return f"{which} at offset {offset} is empty"
        end = offset + length
        if end >= _NO_END:
            return f"{which} at offset {offset} of length {length} ends past 2^64"
        text = f"{which} {_span(offset, end)}"
        if index > 0 and offset < previous_end:
            return (f"{text} starts before the end of the range before it ({previous_end}): ranges are sorted and "
                    "disjoint")
        if device_size is not None and end > device_size:
            return f"{text} ends past the device's {device_size} bytes"
        if pages and (offset < asked_offset or end > asked_end):
            return f"{text} is outside the bytes asked for {_span(asked_offset, asked_end)}"
        if next_offset is not None and end > next_offset:
            return f"{text} ends past the page's next_offset {next_offset}"
        previous_end = end
    return ""


def _runs_problem(page, asked_offset):
    blocks = 0
    for index, (_, count) in enumerate(page["runs"]):
        if count == 0:
            return f"run {index} covers no block"
        blocks += count
        if blocks >= _NO_END:
            return "its runs cover more than 2^64 blocks"
    block_size, offset = page.get("block_size"), page.get("offset")
    if not block_size or offset is None:
        return ""
    next_offset = page["next_offset"]
    if offset % block_size:
        return f"its offset {offset} is not a multiple of its block_size {block_size}"
    if next_offset < offset:
        return f"it ends at next_offset {next_offset}, before its offset {offset}"
    if "length" in page and page["length"] != next_offset - offset:
        return f"its length {page['length']} is not next_offset - offset ({next_offset - offset})"
    if blocks and (offset > asked_offset or asked_offset - offset >= block_size):
        return (f"its offset {offset} is not the start of the block holding the offset asked for "
                f"({asked_offset})")
    covered = -(-(next_offset - offset) // block_size)
    if covered != blocks:
        return (f"its runs cover {blocks} blocks of {block_size} bytes, but {_span(offset, next_offset)} spans "
                f"{covered}")
    return ""


def page_problem(command, page, asked_offset=0, asked_end=_NO_END - 1):
    """"" when `page` is consistent for a request of the bytes [asked_offset, asked_end) (asked_end 2^64 - 1:
    to the device's end), else what is wrong. A reply without next_offset comes from a server that does not page
    and sends the whole map whatever was asked: only its ranges' order and bounds are checked then."""
    if command == "cbt-raw-map":
        return _runs_problem(page, asked_offset)
    return _ranges_problem(page, asked_offset, asked_end, "next_offset" in page)


def pages_disagree(first, following):
    """"" when a following page of one map agrees with the first on block_size and device_size (each checked only
    where both pages give it), else what differs."""
    for key in ("block_size", "device_size"):
        if key in first and key in following and first[key] != following[key]:
            return f"its {key} changed from {first[key]} to {following[key]} between pages of one generation"
    return ""

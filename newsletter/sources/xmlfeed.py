"""Reading the entries of an XML feed (Atom or RSS 2.0) so that one bad entry, or a body cut
off mid-download, costs only the entries it touches.

The standard library parser is enough here: ElementTree never fetches external entities, and
the bundled expat (>= 2.4) refuses entity-expansion bombs."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from . import RecordError, publication_time, shown

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
#: The first element start tag, after the XML declaration, comments and doctype.
_ROOT_START = re.compile(r"<(?![?!])([^\s/>]+)[^>]*>")

Entry = tuple[str, ET.Element]
"""An entry element and its label for error reports: ``entry 3`` (1-based, as in XPath)."""


def feed_entries(text: str, kinds: Mapping[str, str]) -> Iterator[Entry | RecordError]:
    """The entries of a feed; ``kinds`` maps each accepted root tag to its entry tag.

    A body that is not well-formed XML (typically a truncated download) is reported as one
    ``document`` error, and then every complete entry in it is still parsed on its own,
    wrapped in the document's root start tag so its namespace prefixes resolve. An entry
    that still does not parse is reported by its position; the others are kept."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        yield RecordError("document", f"not well-formed XML ({exc}); complete entries are kept")
        yield from _salvage(text, kinds)
        return
    entry_tag = kinds.get(root.tag)
    if entry_tag is None:
        expected = ", ".join(f"<{_local(tag)}>" for tag in kinds)
        yield RecordError("document", f"root element is <{_local(root.tag)}>, expected {expected}")
        return
    for index, element in enumerate(root.iter(entry_tag), start=1):
        yield f"{_local(entry_tag)} {index}", element


def _salvage(text: str, kinds: Mapping[str, str]) -> Iterator[Entry | RecordError]:
    match = _ROOT_START.search(text)
    if match is None:
        return
    root_start, root_name = match.group(0), match.group(1)
    entry_tag = {_local(root): entry for root, entry in kinds.items()}.get(_local(root_name))
    if entry_tag is None:
        return
    name = _local(entry_tag)
    closing = f"</{name}>"
    chunks = re.split(rf"(?=<{name}[\s>])", text[match.end() :])[1:]
    for index, chunk in enumerate(chunks, start=1):
        end = chunk.find(closing)
        if end < 0:
            continue  # the entry the body broke off in, already covered by the document error
        label = f"{name} {index}"
        try:
            wrapper = ET.fromstring(f"{root_start}{chunk[: end + len(closing)]}</{root_name}>")
        except ET.ParseError as exc:
            yield RecordError(label, f"not well-formed XML ({exc})")
            continue
        yield label, wrapper[0]


def _local(tag: str) -> str:
    """``{namespace}entry`` or ``prefix:entry`` -> ``entry``."""
    return tag.rpartition("}")[2].rpartition(":")[2]


def text_of(element: ET.Element, path: str) -> str:
    """The whitespace-normalized text of the first ``path`` child, or "" if there is none."""
    return " ".join((element.findtext(path) or "").split())


def timestamp(value: str, name: str) -> str | None:
    """An ISO-8601 (Atom) or RFC 822 (RSS) time as UTC ISO text; "" is None. ValueError
    refuses one that is not a date or is out of range (see ``publication_time``)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} is not a date: {shown(value)}") from None
    return publication_time(moment, name)

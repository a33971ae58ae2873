"""Text as people read it: the one place where stored text (as the source sent it, with
arXiv's TeX) is cleaned for display. The email calls :func:`display_text`, the web pages
:func:`one_line`; both drop control characters (a NUL in a title must not reach a Subject).
The store keeps the text as it came.

arXiv titles and abstracts carry TeX: accents (``Schr\\"odinger``), inline math
(``$\\alpha$``), font switches (``{\\em ...}``). pylatexenc turns them into Unicode text:
"Schrödinger", Greek letters, math symbols. Text without TeX markup is only
whitespace-normalized: in plain text (Hugging Face summaries, JSONL) ``~``, ``--``, braces
or a lone ``$5`` mean what they say and must not be read as TeX.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from pylatexenc import latexwalker, macrospec
from pylatexenc.latex2text import (
    LatexNodes2Text,
    MacroTextSpec,
    SpecialsTextSpec,
    get_default_latex_context_db,
)

log = logging.getLogger(__name__)
# pylatexenc logs each malformed formula it reads anyway as a warning; in abstracts they are
# routine, and the text is shown all the same.
logging.getLogger("pylatexenc").setLevel(logging.ERROR)

#: A TeX command (``\alpha``, ``\"o``, ``\'e``) or a pair of ``$``: a text with neither is
#: not TeX and is only whitespace-normalized.
_LOOKS_LIKE_TEX = re.compile(r"\\[A-Za-z\"'`^~=.]|\$[^$]*\$")
#: Characters that are markup in TeX but plain text in abstracts written for the web:
#: ``%`` would start a comment and swallow the rest of the line, ``&`` and ``#`` vanish.
_TEX_LITERALS = re.compile(r"(?<!\\)([%&#])")
_SCRIPTS = ("^", "_")
#: C0 and C1 control characters and DEL, for ``str.translate``: the ones that are whitespace
#: (tab, line breaks) become spaces, the others (NUL, ESC, ...) are dropped.
_CONTROLS = {c: " " if chr(c).isspace() else None for c in (*range(0x20), *range(0x7F, 0xA0))}


def _operand(node: Any, l2tobj: LatexNodes2Text) -> str:
    """A braced argument as text, in parentheses unless it is one symbol, word or number:
    ``x^{p-2}`` reads ``x^(p-2)`` (pylatexenc alone gives ``x^p-2``), ``x^{10}`` ``x^10``."""
    text = l2tobj.nodelist_to_text([node]).strip()
    return text if len(text) <= 1 or text.isalnum() else f"({text})"


def _arguments(node: Any) -> list[Any]:
    return [a for a in (node.nodeargd.argnlist if node.nodeargd else []) if a is not None]


def _script(node: Any, l2tobj: LatexNodes2Text) -> str:
    return node.specials_chars + "".join(_operand(a, l2tobj) for a in _arguments(node))


def _fraction(node: Any, l2tobj: LatexNodes2Text) -> str:
    """``\\frac{a+b}{2}`` reads ``(a+b)/2``, not ``a+b/2``."""
    return "/".join(_operand(a, l2tobj) for a in _arguments(node))


@lru_cache(maxsize=1)
def _converter() -> tuple[LatexNodes2Text, macrospec.LatexContextDb]:
    """The text converter and the parser context it reads (built once, on first use)."""
    parsing = latexwalker.get_default_latex_context_db()
    parsing.add_context_category(
        "newsletter",
        prepend=True,
        # pylatexenc's parser does not know these and reads them without their arguments.
        macros=[macrospec.std_macro(name, False, 2) for name in ("tfrac", "dfrac", "href")],
        specials=[
            macrospec.SpecialsSpec(c, args_parser=macrospec.MacroStandardArgsParser("{"))
            for c in _SCRIPTS
        ],
    )
    texts = get_default_latex_context_db()
    texts.add_context_category(
        "newsletter",
        prepend=True,
        macros=[
            *(MacroTextSpec(name, _fraction) for name in ("frac", "tfrac", "dfrac")),
            MacroTextSpec("|", "‖"),
        ],
        specials=[SpecialsTextSpec(c, _script) for c in _SCRIPTS],
    )
    # A macro pylatexenc does not know keeps the text of its arguments (``\texttt{x}`` reads
    # "x") instead of vanishing with them.
    texts.set_unknown_macro_spec(MacroTextSpec("", discard=False))
    return LatexNodes2Text(latex_context=texts, math_mode="text"), parsing


def one_line(text: str) -> str:
    """``text`` without control characters, its runs of whitespace (line breaks included)
    made single spaces: safe in a header (a Subject) and in any page."""
    return " ".join(text.translate(_CONTROLS).split())


def display_text(text: str) -> str:
    """``text`` as a reader should see it: TeX accents and inline math turned into Unicode,
    TeX markup dropped, control characters removed and runs of whitespace (newlines
    included) made single spaces (:func:`one_line`).

    Never raises: text that pylatexenc cannot read is shown with its whitespace normalized.
    """
    if _LOOKS_LIKE_TEX.search(text):
        converter, parsing = _converter()
        try:
            text = converter.latex_to_text(_TEX_LITERALS.sub(r"\\\1", text), latex_context=parsing)
        except Exception:  # pylatexenc trips over some malformed markup: show it as it came
            log.debug("cannot read the TeX in %r", text[:80], exc_info=True)
    return one_line(text)

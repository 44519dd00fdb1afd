"""Splitting the plain text of a reply into what the person wrote now and the earlier message
their mail program quoted under it. Pure and linear: plain string tests on bounded lines, no
regular expressions that could backtrack.

The quote starts at the earliest of:

- an attribution line ("On <date>, <name> wrote:", and its German, French, Spanish, Italian,
  Dutch and Portuguese forms), also when the mail program wrapped it over two lines;
- Outlook's "-----Original Message-----" line (and its translations);
- Outlook's header block: a "From:" line with a "Sent:" or "Date:" line right under it (and
  their translations), with the "____" rule above it, unless a "Forwarded message" line heads
  it;
- the block of ">"-quoted lines that ends the message, with the attribution above it.

An attribution with ">" lines somewhere under it starts the quote only as the head of that
closing block: when text follows the quoted lines, the person answered between them.

Nothing is ever lost: the new text and the quoted text together are the whole text, but for
the whitespace between them, and a message that is nothing but a quote keeps it as its text.
"""

from __future__ import annotations

MAX_MARKER_CHARS = 500  # an attribution or header line longer than this is the person's text
_LOOKAHEAD = 4  # lines under a "From:" line in which its "Sent:" line may be

# (how the normalised, lower-cased line starts, a verb it holds, whether it ends with the verb)
_ATTRIBUTIONS = (
    ("on ", " wrote:", True),
    ("am ", " schrieb ", False),  # Am 23.11.2026 um 09:30 schrieb Ada <ada@example.com>:
    ("am ", " schrieb:", True),
    ("le ", " a écrit :", True),
    ("le ", " a écrit:", True),
    ("el ", " escribió:", True),
    ("il ", " ha scritto:", True),
    ("op ", " schreef ", False),
    ("op ", " schreef:", True),
    ("em ", " escreveu:", True),
)
# Verbs that mark the line right above a closing ">" block as its attribution, whatever the
# line starts with ("Ada Lovelace <ada@example.com> wrote:").
_QUOTING_VERBS = (" wrote", " schrieb", " écrit", " escribió", " scritto", " schreef", " escreveu")
_ORIGINAL_MESSAGE = frozenset({
    "original message", "ursprüngliche nachricht", "message d'origine", "mensaje original",
    "messaggio originale", "oorspronkelijk bericht", "mensagem original",
})
_FORWARD_MARKERS = ("forwarded message", "weitergeleitete nachricht", "message transféré",
                    "mensaje reenviado", "messaggio inoltrato", "doorgestuurd bericht",
                    "mensagem encaminhada")
_PREFIXES = frozenset(prefix for prefix, _, _ in _ATTRIBUTIONS)
_FROM = ("from:", "von:", "de:", "de :", "da:", "van:")
_FIRST_CHARS = frozenset({prefix[0] for prefix in _PREFIXES} | {word[0] for word in _FROM} | {"-", "*"})
_SENT = ("sent:", "date:", "gesendet:", "datum:", "envoyé :", "envoyé:", "date :", "enviado:",
         "enviado el:", "fecha:", "inviato:", "data:", "verzonden:", "datum:")


def split_quote(text: str) -> tuple[str, str]:
    """(the new text, the quoted earlier message); ("whole text", "") when there is no quote
    or nothing above it."""
    lines = text.split("\n")
    start = _quote_start(lines)
    if start is None:
        return text, ""
    new = "\n".join(lines[:start]).rstrip()
    if not new.strip():
        return text, ""
    return new, "\n".join(lines[start:]).strip("\n").rstrip()


def _quote_start(lines: list[str]) -> int | None:
    last_quoted = -1
    for index, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            last_quoted = index
    for index, line in enumerate(lines):
        marker = _marker(lines, index, line)
        if marker == "attribution" and index <= last_quoted:
            continue
        if marker == "attribution" or (marker == "outlook" and not _forward_above(lines, index)):
            return _with_rule_above(lines, index)
    return _closing_block(lines)


def _normal(line: str) -> str:
    """The line lower-cased with its whitespace (non-breaking spaces too) collapsed, or "" when
    it is too long to be a marker."""
    if len(line) > MAX_MARKER_CHARS:
        return ""
    return " ".join(line.split()).lower()


def _marker(lines: list[str], index: int, line: str) -> str | None:
    if line.lstrip()[:1].lower() not in _FIRST_CHARS:  # most lines: one cheap test
        return None
    normal = _normal(line)
    if not normal:
        return None
    if _is_attribution(normal):
        return "attribution"
    if index + 1 < len(lines) and not normal.endswith(":") and normal[:3] in _PREFIXES:
        wrapped = _normal(line + " " + lines[index + 1])
        if wrapped and _is_attribution(wrapped):
            return "attribution"
    if normal.startswith("--") and normal.strip("- ") in _ORIGINAL_MESSAGE:
        return "outlook"
    return "outlook" if _is_header_block(lines, index, normal) else None


def _is_attribution(normal: str) -> bool:
    if not normal.endswith(":"):
        return False
    for prefix, verb, at_end in _ATTRIBUTIONS:
        if normal.startswith(prefix) and (normal.endswith(verb) if at_end else verb in normal):
            return True
    return False


def _is_header_block(lines: list[str], index: int, normal: str) -> bool:
    normal = normal.replace("*", "")  # "*From:* Ada", from the bold labels of an HTML part
    if not normal.startswith(_FROM) or normal.endswith(":"):
        return False
    for below in lines[index + 1:index + 1 + _LOOKAHEAD]:
        if _normal(below).replace("*", "").startswith(_SENT):
            return True
    return False


def _forward_above(lines: list[str], index: int) -> bool:
    """Whether a header block heads a forwarded message ("---------- Forwarded message ----"),
    which is what the person sends now, not a quote."""
    for above in lines[max(0, index - 2):index]:
        normal = _normal(above)
        if any(marker in normal for marker in _FORWARD_MARKERS):
            return True
    return False


def _with_rule_above(lines: list[str], index: int) -> int:
    """Outlook draws a "____" rule above its header block: it belongs to the quote."""
    above = index - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    rule = lines[above].strip() if above >= 0 else ""
    if len(rule) >= 5 and (set(rule) == {"_"} or set(rule) == {"-"}):
        return above
    return index


def _closing_block(lines: list[str]) -> int | None:
    """Where the ">" block ending the message starts, with the attribution above it."""
    end = len(lines) - 1
    while end >= 0 and not lines[end].strip():
        end -= 1
    if end < 0 or not lines[end].lstrip().startswith(">"):
        return None
    start = end
    index = end
    while index >= 0:
        stripped = lines[index].lstrip()
        if stripped.startswith(">"):
            start = index
        elif stripped:
            break
        index -= 1
    above = start - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    if above >= 0 and _names_the_quote(_normal(lines[above])):
        return above
    if above >= 1 and _names_the_quote(_normal(lines[above - 1] + " " + lines[above])):
        return above - 1
    return start


def _names_the_quote(normal: str) -> bool:
    if not normal.endswith(":"):
        return False
    return _is_attribution(normal) or any(verb in normal for verb in _QUOTING_VERBS)

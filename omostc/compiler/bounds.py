"""What keeps compiling any input at a bounded cost, and the wording of what it refuses.

``ast.parse`` costs about 900 bytes of memory per node it builds, whatever the source looks like,
and a node can cost as little as one or two source bytes (``0,0,0,...`` or ``x;x;x;...``): read
whole, an 8 MiB input could take 4 to 8 GB. So before parsing, the program's tokens are counted
by one regular expression (names, numbers, strings, punctuation, line ends; a string is one
token, an f-string as many as its characters), and a program of more than ``MAX_TOKENS`` is
refused: parsing then costs at most ~450 MB and ~2 s whatever the input, and a program as the
Omost models write it (about 100 tokens a region) fits 5,000 regions.

Numbers are shown as written, the long ones by their first digits and their length, never
converted to text whole (Python refuses ints over 4,300 digits). Strings holding lone UTF-16
surrogates (``'\\ud800'``) are not valid text: nothing could print or write them.
"""

from __future__ import annotations

import re

MAX_TOKENS = 500_000

# One token per match, blanks and a comment skipped in front of it; a string is matched by its
# opening quote and its end found with ``str.find`` (``re`` would keep a backtracking record for
# each repetition of a group: a gigabyte for an 8 MB string).
_TOKEN = re.compile(r"[ \t\f\r]*(?:#[^\n]*)?(?:(?P<q>[rRbBuUfF]{0,2}(?:'''|\"\"\"|'|\"))"
                    r"|[^\W\d]\w*|\.?\d[\w.]*|\\\r?\n|\n|\S)")
_STOPS = {"'": re.compile(r"[\\'\n]"), '"': re.compile(r'[\\"\n]'),
          "'''": re.compile(r"[\\']"), '"""': re.compile(r'[\\"]')}


def too_many_tokens(code: str) -> bool:
    """Does ``code`` hold more than MAX_TOKENS tokens? Counting stops there (~0.5 s at most);
    an escape or a lone quote inside a string counts as a token too, so time is bounded as well."""
    if len(code) <= MAX_TOKENS:
        return False
    count, pos = 0, 0
    match = _TOKEN.match
    while count <= MAX_TOKENS:
        m = match(code, pos)
        if m is None:
            break
        count += 1
        pos = m.end()
        opening = m.group("q")
        if opening is not None:
            start = pos
            pos, steps = _string_end(code, pos, opening.lstrip("rRbBuUfF"), MAX_TOKENS - count)
            count += steps + (pos - start if "f" in opening.lower() else 0)  # an f-string holds code
    return count > MAX_TOKENS


def _string_end(code: str, pos: int, quote: str, budget: int) -> tuple[int, int]:
    """Where the string whose body starts at ``pos`` ends (just past its closing quote, or at the
    end of its line or of the code when it is unterminated), and how many escapes and lone
    quotes were stepped over on the way (counting stops past ``budget``)."""
    stops, steps = _STOPS[quote].search, 0
    while steps <= budget:
        m = stops(code, pos)
        if m is None:
            return len(code), steps
        at, char = m.start(), m.group()
        if char == "\\":
            pos, steps = at + 2, steps + 1
        elif char == "\n":
            return at, steps
        elif code.startswith(quote, at):
            return at + len(quote), steps
        else:
            pos, steps = at + 1, steps + 1
    return pos, steps



# --- numbers ------------------------------------------------------------------------------------

SHOWN_NUMBER = 24  # a number written longer than this is shown by its first digits and length


def shown_number(text: str) -> str:
    """A number as the user wrote it; a long one as "a 5,000-digit number starting 0xffff..."."""
    text = text.strip()
    if len(text) <= SHOWN_NUMBER:
        return text
    body = re.sub(r"^[-+\s]*(0[xXoObB])?", "", text)
    digits = sum(c.isalnum() for c in body)
    return f"a {digits:,}-digit number starting {text[:12]}..."


_LONG_DIGITS = re.compile(r"(?<![\w.])\d[\d_]{99,}")


def long_decimal(line: str) -> re.Match | None:
    """The first long decimal integer written on ``line``."""
    return _LONG_DIGITS.search(line)


# --- text ---------------------------------------------------------------------------------------

SURROGATE = re.compile(r"[\ud800-\udfff]")
_LONE = re.compile(r"[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")


def escaped(char: str) -> str:
    return f"\\u{ord(char):04x}"


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` (one not paired high-then-low), escaped."""
    m = _LONE.search(text)
    return escaped(m.group()) if m else None


def joined_pairs(text: str) -> str:
    """``text`` with each surrogate pair (``\\ud83d\\ude00``) made the one character it encodes."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


def pair_message(text: str) -> str:
    """The warning for a string whose surrogate escapes all pair up."""
    pairs = re.findall(r"[\ud800-\udbff][\udc00-\udfff]", text)
    more = f"; {len(pairs) - 1} more pair{'s' if len(pairs) > 2 else ''} likewise" if len(pairs) > 1 else ""
    return (f"{escaped(pairs[0][0])}{escaped(pairs[0][1])} is a UTF-16 surrogate pair, read as the one "
            f"character it encodes: {joined_pairs(pairs[0])}{more}")


def not_text_message(char: str) -> str:
    return (f"this string is not valid text: a lone surrogate {char} (half of a UTF-16 pair, which "
            "cannot be printed or saved); write the character itself")


# --- nesting ------------------------------------------------------------------------------------

_NESTING = str.maketrans("", "", "-+~*/%@&|^<>.([{:=!,")


def deepest_line(lines: list[str]) -> tuple[int, int]:
    """The 1-based (line, column) where a program too deeply nested to parse most likely is: the
    line with the most operators and brackets, at its first one."""
    best, best_count = 0, -1
    for i, line in enumerate(lines):
        count = len(line) - len(line.translate(_NESTING))
        if count > best_count:
            best, best_count = i, count
    line = lines[best] if lines else ""
    col = next((j for j, c in enumerate(line) if c in "-+~*/%@&|^<>.([{:=!,"), 0)
    return best + 1, col + 1


def statement_ends(code: str, before: int) -> list[int]:
    """The 1-based lines that end a statement (a line end outside brackets and strings) before
    offset ``before``: where a truncated program can be cut. One pass of the token expression
    (``tokenize`` would take seconds on a large program)."""
    ends: list[int] = []
    depth, pos, line = 0, 0, 1
    match = _TOKEN.match
    while pos < before:
        m = match(code, pos)
        if m is None:
            break
        token, start = m.group().lstrip(" \t\f\r"), pos
        pos = m.end()
        opening = m.group("q")
        if opening is not None:
            pos, _ = _string_end(code, pos, opening.lstrip("rRbBuUfF"), len(code))
            line += code.count("\n", start, pos)
        elif token.endswith("\n"):
            if depth == 0 and not token.startswith("\\") and pos <= before:
                ends.append(line)
            line += 1
        elif token in ("(", "[", "{"):
            depth += 1
        elif token in (")", "]", "}"):
            depth = max(depth - 1, 0)
    return ends

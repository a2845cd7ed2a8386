"""Host names as DNS can carry them, checked before anything looks one up.

Python's resolver encodes every name with the ``idna`` codec first, which
raises a bare ``UnicodeError`` ("label empty or too long") for a name DNS
cannot carry.  :func:`host_name_problem` says why in words, so the parser
(for the names this machine looks up) and every place that resolves one can
name what is wrong instead.
"""

from __future__ import annotations

from encodings.idna import nameprep

MAX_LABEL = 63  # RFC 1035: the bytes of one dot-separated label
MAX_NAME = 253  # and of the whole name, written with dots


def host_name_problem(host: str) -> str | None:
    """Why ``host`` is no name DNS can look up, or None if it may be one.

    IPv6 addresses (with ``:``) are left to the address checks; a single
    trailing dot (a fully qualified name) is allowed.
    """
    if ":" in host:
        return None
    name = host[:-1] if host.endswith(".") else host
    if not name:
        return "it is empty"
    for label in name.split("."):
        if not label:
            return "a label (between dots) is empty"
        problem = _label_problem(label)
        if problem is not None:
            return problem
    if len(name) > MAX_NAME and len(name.encode("idna")) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    return None


def _label_problem(label: str) -> str | None:
    """Why one non-empty label cannot be looked up, from the label itself
    (the codec's message, "label empty or too long", says neither which)."""
    too_long = f"a label is longer than {MAX_LABEL} characters"
    # Checked on every channel opened: only an international label pays
    # for the codec.
    if label.isascii():
        return too_long if len(label) > MAX_LABEL else None
    invalid = f"the label '{label}' is no valid international name"
    try:
        # What the idna codec encodes: case folded, and characters such as
        # soft hyphens and zero-width spaces dropped.
        prepared = nameprep(label)
    except UnicodeError:
        return invalid
    if not prepared:
        shown = label.encode("ascii", "backslashreplace").decode()  # invisible
        return (
            f"a label ('{shown}') is empty once the characters DNS ignores are dropped"
        )
    ascii_form = (
        prepared
        if prepared.isascii()
        else "xn--" + prepared.encode("punycode").decode()
    )
    if len(ascii_form) > MAX_LABEL:
        return too_long  # as punycode: "ä" * 60 is 66 characters
    try:
        label.encode("idna")
    except UnicodeError:
        return invalid  # a prohibited character, or mixed directions
    return None


def invalid_host(host: str, problem: str) -> str:
    """The sentence for a host name that ``host_name_problem`` refused."""
    return f"host name '{host}' is not valid: {problem}"

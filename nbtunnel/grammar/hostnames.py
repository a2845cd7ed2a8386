"""Host names as DNS can carry them, checked before anything looks one up.

Python's resolver encodes every name with the ``idna`` codec first, which
raises a bare ``UnicodeError`` ("label empty or too long") for a name DNS
cannot carry.  :func:`host_name_problem` says why in words, so the parser
(for the names this machine looks up) and every place that resolves one can
name what is wrong instead.
"""

from __future__ import annotations

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
        try:
            # Checked on every channel opened: only an international label
            # pays for the codec.
            size = len(label) if label.isascii() else len(label.encode("idna"))
        except UnicodeError as exc:
            if "too long" not in str(exc):
                return f"the label '{label}' is no valid international name"
            size = MAX_LABEL + 1  # as punycode: "ä" * 40 is 86 characters
        if size > MAX_LABEL:
            return f"a label is longer than {MAX_LABEL} characters"
    if len(name) > MAX_NAME and len(name.encode("idna")) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    return None


def invalid_host(host: str, problem: str) -> str:
    """The sentence for a host name that ``host_name_problem`` refused."""
    return f"host name '{host}' is not valid: {problem}"

"""Distinguished names (RFC 4514) for the LDAP sync: split into parts, compared in one spelling.

Pure string work, no ldap3: :func:`dn_key` gives the spelling DNs are compared in,
:func:`first_rdn_value` a group's name from its DN, :func:`split_dn` the ``(attribute, value)``
pairs with escapes undone; :func:`is_dn` tells a DN from a plain name or an e-mail address.
"""

from __future__ import annotations

import re

_LOOSE_SEPARATOR = re.compile(r"\s[,=+]|[,=+]\s|^\s|\s$")


def is_dn(value: str) -> bool:
    """Whether ``value`` looks like a DN (``name=value...``) rather than a name or an e-mail address."""
    return "=" in value and "@" not in value.split("=", 1)[0]


def dn_key(dn: str) -> str:
    """A DN in one spelling for comparisons: attribute names and values lower-case, no spaces around
    separators, escapes undone (``CN=Doe\\, Jo , DC=x`` and ``cn=doe\\2c jo,dc=x`` give one key)."""
    if "\\" not in dn and '"' not in dn:
        if not _LOOSE_SEPARATOR.search(dn):
            return dn.lower()  # the usual spelling, and most of a sync's DNs: no work beyond this
        parts = (part.partition("=") for part in dn.split(","))
        return ",".join(f"{name.strip().lower()}={value.strip().lower()}" for name, _, value in parts)
    return ",".join(f"{name.lower()}={value.lower()}" for name, value in split_dn(dn))


def first_rdn_value(dn: str) -> str:
    """The value of a DN's first component: ``CN=Network Ops,OU=Groups,...`` gives ``Network Ops``."""
    parts = split_dn(dn) if "=" in dn else []
    return parts[0][1] if parts else dn


def split_dn(dn: str) -> list[tuple[str, str]]:
    """``(attribute, value)`` per RDN (the first of a multi-valued RDN), escapes undone (RFC 4514)."""
    result: list[tuple[str, str]] = []
    name: list[str] = []
    value = bytearray()
    in_value = skip = False
    i = 0
    while i < len(dn):
        char = dn[i]
        if char == "\\" and i + 1 < len(dn):
            pair = dn[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                escaped, i = bytes.fromhex(pair), i + 3
            else:
                escaped, i = dn[i + 1].encode(), i + 2
            if in_value and not skip:
                value += escaped
            continue
        i += 1
        if char == ",":
            result.append(("".join(name).strip(), value.decode("utf-8", "replace").strip()))
            name, value, in_value, skip = [], bytearray(), False, False
        elif char == "+":
            skip = True
        elif char == "=" and not in_value:
            in_value = True
        elif skip:
            continue
        elif in_value:
            value += char.encode()
        else:
            name.append(char)
    if name or value:
        result.append(("".join(name).strip(), value.decode("utf-8", "replace").strip()))
    return result

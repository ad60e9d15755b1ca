#!/usr/bin/env python3
"""Runs kosoku (https://pypi.org/project/kosoku/) with a fix for its compression cases.

Use it as the `kosoku` command: `python3 scripts/kosoku_shim.py [KOSOKU_ARGS...]`.

The bug worked around, in kosoku 0.1.0 (the only version this shim knows): kosoku's
engine (the Rust extension `kosoku._kosoku`) hands messages to Autobahn's Python case
code as `str`, in the form the Python 2 code of the Autobahn TestSuite once had: a
text message as its decoded text, a binary message as a `str` of code points 0-255,
one per byte (latin-1; the engine's own error message says "has no single-byte
(latin-1) form for a binary/control payload"). The cases of sections 12 and 13
(permessage-deflate, `kosoku/cases/case12_x_x.py`) hash what they receive with
`hashlib.sha1().update(msg)`, which needs bytes: every one of them raised "Strings
must be encoded before hashing" as soon as the echo of its first message came back,
and ended as ERROR. Neither section can run against a peer that negotiates
permessage-deflate as kosoku ships (a peer that does not gets UNIMPLEMENTED, which
never reaches that code).

The fix: the `onMessage` of each 12.* and 13.* case class (in `kosoku.cases.CASES`)
is wrapped so that it gets bytes, as the case code expects: text encoded as UTF-8,
binary encoded as latin-1 (which gives back exactly the bytes received). Nothing
else changes; the other sections are untouched, and a message the case compares is
still the one the peer sent, byte for byte.

Any other kosoku version is refused (exit status 2): its engine may deliver messages
differently, and the fix could then hide a real difference. Set
KOSOKU_SHIM_ANY_VERSION=1 to run anyway (with a warning).
"""

import sys
from importlib.metadata import PackageNotFoundError, version
from os import environ

KNOWN_VERSION = "0.1.0"


def check_version():
    try:
        found = version("kosoku")
    except PackageNotFoundError:
        sys.exit("kosoku_shim: kosoku is not installed (pip install kosoku==0.1.0)")
    if found == KNOWN_VERSION:
        return
    message = (
        f"kosoku_shim: kosoku {found} installed; this shim knows {KNOWN_VERSION} only "
        "(see its header: the bug it works around may be fixed, or changed)"
    )
    if environ.get("KOSOKU_SHIM_ANY_VERSION") == "1":
        print(message + "; running anyway (KOSOKU_SHIM_ANY_VERSION=1)", file=sys.stderr)
        return
    print(message, file=sys.stderr)
    sys.exit(2)


def as_bytes(message, binary):
    """The message's bytes, from the form kosoku 0.1.0's engine delivers."""
    if not isinstance(message, str):
        return message
    return message.encode("latin-1" if binary else "utf-8")


def patch_compression_cases():
    from kosoku.cases import CASES

    patched = 0
    for case_id, case in CASES.items():
        if not case_id.startswith(("12.", "13.")):
            continue
        on_message = case.onMessage

        def fixed(self, message, binary, on_message=on_message):
            return on_message(self, as_bytes(message, binary), binary)

        case.onMessage = fixed
        patched += 1
    if patched != 216:
        sys.exit(f"kosoku_shim: expected 216 cases in sections 12 and 13, found {patched}")


def main():
    check_version()
    patch_compression_cases()
    from kosoku._cli import main as kosoku_main

    sys.argv[0] = "kosoku"
    kosoku_main()


if __name__ == "__main__":
    main()

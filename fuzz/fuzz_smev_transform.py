"""libFuzzer target (atheris): the SMEV transform over whatever the hardened parser accepts.

Run by ``make fuzz``; by hand: ``.venv/bin/python fuzz/fuzz_smev_transform.py -help=1``.
Expected failures are ``SmevbusError`` subclasses; any other exception, an output that is
not XML, a transform that is not idempotent, or one that differs from the transform of the
element's exclusive c14n form is a finding (libFuzzer writes the input to an artifact).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["gateway"]):
    from lxml import etree

    from gateway.core.errors import SmevbusError
    from gateway.crypto.smev_transform import smev_transform
    from gateway.xml.parse import parse_secure

XML_NS = "{http://www.w3.org/XML/1998/namespace}"
#: libxml2's c14n writes namespace URIs without escaping these (its output is then not
#: the same document, or not XML at all), so the c14n comparison skips such trees.
C14N_UNESCAPED = frozenset('&"<\t\n\r')


def _binds_xml_namespace(root: etree._Element) -> bool:
    # An xml:* attribute comes out as xmlns:nsN="http://www.w3.org/XML/1998/namespace"
    # (as in the SMEV 3 reference implementation): a digest input, not parsable XML.
    return any(key.startswith(XML_NS) for el in root.iter() for key in el.attrib)


def _c14n_writes_raw(root: etree._Element) -> bool:
    return any(C14N_UNESCAPED.intersection(uri) for el in root.iter() for uri in el.nsmap.values())


def _refused_uri(root: etree._Element) -> bool:
    # libxml2 refuses some namespace URIs ("a b") only sometimes (the error is not fatal and
    # lxml raises it depending on what follows); the transform output declares every URI
    # with a prefix, so for such a tree it may not parse again.
    uris = {uri for el in root.iter() for uri in el.nsmap.values()}
    for uri in uris:
        try:
            parse_secure(etree.tostring(etree.Element(f"{{{uri}}}a", nsmap={"p": uri})))
        except (SmevbusError, ValueError):
            return True
    return False


def test_one_input(data: bytes) -> None:
    try:
        root = parse_secure(data)
        out = smev_transform(root)
    except SmevbusError:
        return
    try:
        c14n = etree.tostring(root, method="c14n", exclusive=True)
    except etree.C14NError:  # e.g. a relative namespace URI, which c14n refuses
        pass
    else:
        if not _c14n_writes_raw(root) and smev_transform(parse_secure(c14n)) != out:
            raise AssertionError(f"transform differs from that of the c14n form: {c14n!r}")
    if _binds_xml_namespace(root) or _refused_uri(root):
        return
    again = smev_transform(parse_secure(out))
    if again != out:
        raise AssertionError(f"transform is not idempotent: {out!r} -> {again!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

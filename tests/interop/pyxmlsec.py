#!/usr/bin/env python3
"""Independent XML Signature / XML Encryption tool over python-xmlsec (libxmlsec1 + OpenSSL).

Used by tests/e2e/xmlsec_interop.rs to prove that `poststelle xml ...` interoperates with
libxmlsec1. Needs `pip install xmlsec lxml` (the PyPI wheels bundle libxmlsec1 >= 1.3).

  pyxmlsec.py sign --key K.pem --cert C.pem [--alg rsa-pss-sha256|rsa-sha256|ecdsa-sha256] IN
  pyxmlsec.py verify --cert C.pem IN            exit 0 valid, 1 invalid
  pyxmlsec.py encrypt --cert C.pem IN           root element -> xenc:EncryptedData (aes256-gcm,
                                                xmlenc11 rsa-oaep, sha256 digest, mgf1sha256; for an
                                                EC certificate: kw-aes256 with a key agreed by
                                                ECDH-ES with a fresh key, ConcatKDF sha256)
  pyxmlsec.py decrypt --key K.pem IN            exit 0 ok, 1 cannot decrypt
  pyxmlsec.py c14n IN                           the root element in inclusive C14N 1.0 (with comments),
                                                for comparing documents independently of our code

IN is a path or `-` for stdin; documents are written to stdout. Exit 2 on usage/setup errors.
The templates are built by hand with lxml: the python constants lack RSA-PSS, xmlenc11
rsa-oaep and ECDH-ES, but libxmlsec1 >= 1.3 resolves those Algorithm URIs from the XML itself.

ECDH-ES needs the originator's key from `OriginatorKeyInfo/KeyValue`, and libxmlsec1 1.3
disables KeyValue by default (its command line takes `--enabled-key-data key-value,...`);
python-xmlsec has no binding for that, so `enable_key_value` calls libxmlsec1 (linked into the
module, its symbols exported) through ctypes. Without it, libxmlsec1 runs the agreement without
the originator's key and fails at the key unwrap ("bad magic block").
"""

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile

try:
    import xmlsec
    from lxml import etree
except ImportError as e:  # pragma: no cover - reported to the Rust test
    sys.stderr.write(f"setup: python module missing ({e}); install with: pip install xmlsec lxml\n")
    sys.exit(3)

def enable_key_value():
    """Adds the KeyValue key data to libxmlsec1's enabled list (see the module documentation)."""
    lib = ctypes.CDLL(xmlsec.__file__)
    lib.xmlSecKeyDataIdsGetEnabled.restype = ctypes.c_void_p
    lib.xmlSecKeyDataValueGetKlass.restype = ctypes.c_void_p
    lib.xmlSecPtrListAdd.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    if lib.xmlSecPtrListAdd(lib.xmlSecKeyDataIdsGetEnabled(), lib.xmlSecKeyDataValueGetKlass()) != 0:
        raise SystemExit("setup: cannot enable KeyValue in libxmlsec1")


DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

SIG_ALGS = {
    "rsa-pss-sha256": "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
    "rsa-sha256": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "ecdsa-sha256": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
}

ID_ATTRS = ("Id", "ID", "id")


def read_doc(path):
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_blank_text=False
    )
    return etree.fromstring(data, parser).getroottree()


def write_doc(tree):
    sys.stdout.buffer.write(etree.tostring(tree, xml_declaration=True, encoding="UTF-8"))
    sys.stdout.buffer.flush()


def ds(tag):
    return f"{{{DS}}}{tag}"


def xenc(tag):
    return f"{{{XENC}}}{tag}"


def cmd_sign(a):
    tree = read_doc(a.input)
    root = tree.getroot()
    sig = etree.SubElement(root, ds("Signature"), nsmap={"ds": DS})
    si = etree.SubElement(sig, ds("SignedInfo"))
    etree.SubElement(si, ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(si, ds("SignatureMethod"), Algorithm=SIG_ALGS[a.alg])
    ref = etree.SubElement(si, ds("Reference"), URI="")
    tr = etree.SubElement(ref, ds("Transforms"))
    etree.SubElement(tr, ds("Transform"), Algorithm=ENVELOPED)
    etree.SubElement(tr, ds("Transform"), Algorithm=EXC_C14N)
    etree.SubElement(ref, ds("DigestMethod"), Algorithm=SHA256)
    etree.SubElement(ref, ds("DigestValue"))
    etree.SubElement(sig, ds("SignatureValue"))
    ki = etree.SubElement(sig, ds("KeyInfo"))
    x5 = etree.SubElement(ki, ds("X509Data"))
    etree.SubElement(x5, ds("X509Certificate"))

    key = xmlsec.Key.from_file(a.key, xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_file(a.cert, xmlsec.constants.KeyDataFormatCertPem)
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.sign(sig)
    write_doc(tree)
    return 0


def cmd_verify(a):
    tree = read_doc(a.input)
    root = tree.getroot()
    sigs = root.findall(".//" + ds("Signature"))
    if len(sigs) != 1:
        print(f"invalid: expected exactly one ds:Signature, found {len(sigs)}", file=sys.stderr)
        return 1
    sig = sigs[0]
    # The signature must cover the root element (enveloped URI="" or "#id" of the root).
    refs = sig.findall(ds("SignedInfo") + "/" + ds("Reference"))
    root_ids = {"#" + root.get(n) for n in ID_ATTRS if root.get(n) is not None}
    if not any(r.get("URI") == "" or r.get("URI") in root_ids for r in refs):
        print("invalid: no reference covers the root element", file=sys.stderr)
        return 1
    ctx = xmlsec.SignatureContext()
    for el in root.iter(tag=etree.Element):
        for n in ID_ATTRS:
            if el.get(n) is not None:
                ctx.register_id(el, n)
    # Pinned key: the certificate from --cert; KeyInfo in the document is ignored.
    ctx.key = xmlsec.Key.from_file(a.cert, xmlsec.constants.KeyDataFormatCertPem)
    try:
        ctx.verify(sig)
    except xmlsec.Error as e:
        print(f"invalid: {e}", file=sys.stderr)
        return 1
    print("valid")
    return 0


def ec_curve(cert):
    """The OpenSSL name of an EC certificate's curve, or None for another key type."""
    text = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    for line in text.splitlines():
        if "ASN1 OID:" in line:
            return line.split(":", 1)[1].strip()
    return None


def cmd_encrypt_ec(a, curve):
    """ECDH-ES: a fresh originator key for this document (libxmlsec1 takes the originator's
    private key from the keys manager; it writes its public KeyValue into the document)."""
    enable_key_value()
    tree = read_doc(a.input)
    root = tree.getroot()
    ed = etree.Element(xenc("EncryptedData"), nsmap={"xenc": XENC}, Type=XENC + "Element")
    etree.SubElement(ed, xenc("EncryptionMethod"), Algorithm=XENC11 + "aes256-gcm")
    ki = etree.SubElement(ed, ds("KeyInfo"), nsmap={"ds": DS})
    ek = etree.SubElement(ki, xenc("EncryptedKey"))
    etree.SubElement(ek, xenc("EncryptionMethod"), Algorithm=XENC + "kw-aes256")
    eki = etree.SubElement(ek, ds("KeyInfo"))
    am = etree.SubElement(eki, xenc("AgreementMethod"), Algorithm=XENC11 + "ECDH-ES")
    kdm = etree.SubElement(am, f"{{{XENC11}}}KeyDerivationMethod", nsmap={"xenc11": XENC11},
                           Algorithm=XENC11 + "ConcatKDF")
    # libxmlsec1 (over OpenSSL's KDF) needs a non-empty FixedInfo: the wrap algorithm's URI.
    params = etree.SubElement(kdm, f"{{{XENC11}}}ConcatKDFParams",
                              AlgorithmID="00" + (XENC + "kw-aes256").encode().hex(), PartyUInfo="", PartyVInfo="")
    etree.SubElement(params, ds("DigestMethod"), Algorithm=SHA256)
    ok = etree.SubElement(am, xenc("OriginatorKeyInfo"))
    etree.SubElement(ok, ds("KeyName")).text = "originator"
    etree.SubElement(ok, ds("KeyValue"))
    rk = etree.SubElement(am, xenc("RecipientKeyInfo"))
    etree.SubElement(rk, ds("KeyName")).text = "recipient"
    for parent in (ek, ed):
        cd = etree.SubElement(parent, xenc("CipherData"))
        etree.SubElement(cd, xenc("CipherValue"))
    with tempfile.TemporaryDirectory() as tmp:
        originator = os.path.join(tmp, "originator.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}",
                        "-out", originator], check=True, capture_output=True)
        manager = xmlsec.KeysManager()
        key = xmlsec.Key.from_file(originator, xmlsec.constants.KeyDataFormatPem)
        key.name = "originator"
        manager.add_key(key)
    key = xmlsec.Key.from_file(a.cert, xmlsec.constants.KeyDataFormatCertPem)
    key.name = "recipient"
    manager.add_key(key)
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, 256, xmlsec.constants.KeyDataTypeSession)
    out = ctx.encrypt_xml(ed, root)
    write_doc(out.getroottree())
    return 0


def cmd_encrypt(a):
    curve = ec_curve(a.cert)
    if curve:
        return cmd_encrypt_ec(a, curve)
    tree = read_doc(a.input)
    root = tree.getroot()
    # Template (not yet in the tree; encrypt_xml puts it in place of the root element).
    ed = etree.Element(xenc("EncryptedData"), nsmap={"xenc": XENC}, Type=XENC + "Element")
    etree.SubElement(ed, xenc("EncryptionMethod"), Algorithm=XENC11 + "aes256-gcm")
    ki = etree.SubElement(ed, ds("KeyInfo"), nsmap={"ds": DS})
    ek = etree.SubElement(ki, xenc("EncryptedKey"))
    em = etree.SubElement(ek, xenc("EncryptionMethod"), Algorithm=XENC11 + "rsa-oaep")
    etree.SubElement(em, ds("DigestMethod"), Algorithm=SHA256)
    etree.SubElement(em, f"{{{XENC11}}}MGF", nsmap={"xenc11": XENC11}, Algorithm=XENC11 + "mgf1sha256")
    eki = etree.SubElement(ek, ds("KeyInfo"))
    x5 = etree.SubElement(eki, ds("X509Data"))
    etree.SubElement(x5, ds("X509Certificate"))
    cd = etree.SubElement(ek, xenc("CipherData"))
    etree.SubElement(cd, xenc("CipherValue"))
    cd = etree.SubElement(ed, xenc("CipherData"))
    etree.SubElement(cd, xenc("CipherValue"))

    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_file(a.cert, xmlsec.constants.KeyDataFormatCertPem))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, 256, xmlsec.constants.KeyDataTypeSession)
    # encrypt_xml replaces the root element; serialise the tree of the returned element.
    out = ctx.encrypt_xml(ed, root)
    write_doc(out.getroottree())
    return 0


def cmd_decrypt(a):
    tree = read_doc(a.input)
    eds = list(tree.getroot().iter(xenc("EncryptedData")))
    if not eds:
        print("error: no xenc:EncryptedData", file=sys.stderr)
        return 1
    # ECDH-ES: the originator's key is a KeyValue in the document.
    enable_key_value()
    manager = xmlsec.KeysManager()
    key = xmlsec.Key.from_file(a.key, xmlsec.constants.KeyDataFormatPem)
    if a.cert:
        key.load_cert_from_file(a.cert, xmlsec.constants.KeyDataFormatCertPem)
    if a.name:
        key.name = a.name
    manager.add_key(key)
    out = None
    for ed in eds:
        ctx = xmlsec.EncryptionContext(manager)
        try:
            out = ctx.decrypt(ed)
        except xmlsec.Error as e:
            print(f"error: decryption-failed: {e}", file=sys.stderr)
            return 1
        if not isinstance(out, etree._Element):
            print("error: decryption-failed: EncryptedData did not hold XML", file=sys.stderr)
            return 1
    # If the root element was encrypted, the old tree object no longer holds the document.
    write_doc(out.getroottree())
    return 0


def cmd_c14n(a):
    tree = read_doc(a.input)
    sys.stdout.buffer.write(etree.tostring(tree.getroot(), method="c14n", with_comments=True))
    sys.stdout.buffer.flush()
    return 0


def main(argv):
    p = argparse.ArgumentParser(prog="pyxmlsec.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--key", required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--alg", choices=sorted(SIG_ALGS), default="rsa-pss-sha256")
    s.add_argument("input")
    v = sub.add_parser("verify")
    v.add_argument("--cert", required=True)
    v.add_argument("input")
    e = sub.add_parser("encrypt")
    e.add_argument("--cert", required=True)
    e.add_argument("input")
    d = sub.add_parser("decrypt")
    d.add_argument("--key", required=True)
    d.add_argument("--cert", help="the key's certificate (a RecipientKeyInfo naming it by X509Data)")
    d.add_argument("--name", help="the key's name (a RecipientKeyInfo naming it by KeyName)")
    d.add_argument("input")
    c = sub.add_parser("c14n")
    c.add_argument("input")
    a = p.parse_args(argv)
    try:
        return {
            "sign": cmd_sign,
            "verify": cmd_verify,
            "encrypt": cmd_encrypt,
            "decrypt": cmd_decrypt,
            "c14n": cmd_c14n,
        }[a.cmd](a)
    except (OSError, etree.XMLSyntaxError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, OSError) else 1
    except xmlsec.Error as err:
        print(f"error: xmlsec: {err}", file=sys.stderr)
        return 2 if a.cmd in ("sign", "encrypt") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Independent XTA 2.1.1 test client for Poststelle's end-to-end tests.

The Rust e2e tests run this script as a subprocess to talk to a node's XTA 2.1.1
web service (SOAP 1.2) the way a third-party Fachverfahren would: with zeep, a
SOAP stack that shares no code with Poststelle, driven by the official WSDL
(../shared/xoev/xta-2.1.1/schema/XTA.wsdl). The WSDL and its XSDs are loaded
strictly offline; sendMessage goes out as MTOM/XOP unless --inline is given.

Each subcommand prints ONE JSON object on stdout. Exit codes: 0 success,
3 SOAP fault ({"fault": true, ...}), 2 any other error ({"error": ...}).

    xta_client.py --wsdl XTA.wsdl --base https://127.0.0.1:PORT --ca ca.pem \\
        --token T --author psw:01003110 create-id

--dump FILE writes the HTTP request (headers and body) to FILE instead of
sending it, for checking what goes on the wire.
"""

import argparse
import base64
import json
import mimetypes
import os
import posixpath
import sys
import uuid
from datetime import datetime, timezone
from urllib.parse import unquote, urlparse

import requests
import zeep
import zeep.wsdl.attachments
from lxml import etree
from requests_toolbelt.multipart.decoder import MultipartDecoder
from zeep.exceptions import Fault, TransportError
from zeep.transports import Transport
from zeep.wsdl.utils import etree_to_string

XTA = "http://xoev.de/transport/xta/211"
OSCI = "http://www.osci.eu/ws/2008/05/transport"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XOP = "http://www.w3.org/2004/08/xop/include"
PROBLEM = "urn:poststelle:problem"

# Binding QName and path below --base of each of the WSDL's three ports.
PORTS = {
    "management": ("{%s}managementHttpsBinding" % XTA, "/xta/management"),
    "send": ("{%s}sendXTAHttpsBinding" % XTA, "/xta/send"),
    "msgbox": ("{%s}msgBoxHttpsBinding" % XTA, "/xta/msgbox"),
}

# MsgBoxRequestID is required on MsgBoxGetNextRequest and MsgBoxCloseRequest;
# a stateless CLI sends this unless --request-id is given.
DEFAULT_REQUEST_ID = "urn:poststelle:msgbox:start"


def _exact_attachment_content(self):
    """zeep 4.3.3 strips CR/LF from both ends of a "binary" MIME part, which
    corrupts a payload ending in a newline; the multipart decoder has already
    dropped the CRLF that belongs to the boundary, so take the part as it is."""
    data = self._part.content
    if (self.headers.get("Content-Transfer-Encoding") or "").lower() == "base64":
        return base64.b64decode(data)
    return data


zeep.wsdl.attachments.Attachment.content = property(_exact_attachment_content)


class ClientError(Exception):
    """A failure that is not a SOAP fault: printed as {"error": ...}, exit 2."""


class XtaTransport(Transport):
    """Offline schema loading, MTOM/XOP requests on demand, request dumping."""

    def __init__(self, schema_dir, **kwargs):
        super().__init__(**kwargs)
        self.schema_dir = schema_dir
        self.mtom = False          # encode requests as MTOM/XOP
        self.dump_path = None      # write requests there instead of sending
        self.last_response = None  # raw requests.Response of the last call
        self.loaded = []           # every document zeep asked for

    def load(self, url):
        """Local files only. A remote schemaLocation (the shipped XSDs have
        none) is served from the file of the same name beside the WSDL
        (xml.xsd, ws-addr.xsd, xmldsig-core-schema.xsd, ...); the SOAP 1.2
        namespace URL maps to the hidden ".xsd". Nothing is ever fetched."""
        self.loaded.append(url)
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            name = ".xsd" if url.rstrip("/") == SOAP12 else posixpath.basename(parsed.path)
            path = os.path.join(self.schema_dir, name)
            if not name or not os.path.isfile(path):
                raise ClientError("offline: no local copy of %s in %s" % (url, self.schema_dir))
        elif parsed.scheme in ("", "file"):
            path = unquote(parsed.path) if parsed.scheme else url
        else:
            raise ClientError("offline: refusing to load %s" % url)
        with open(path, "rb") as fh:
            return fh.read()

    def post_xml(self, address, envelope, headers):
        if not self.mtom:
            return self.post(address, etree_to_string(envelope), headers)
        action = content_type_param(headers.get("Content-Type", ""), "action")
        body, headers["Content-Type"] = mtom_encode(envelope, action)
        return self.post(address, body, headers)

    def post(self, address, message, headers):
        if self.dump_path:
            with open(self.dump_path, "wb") as fh:
                fh.write(b"POST %s\r\n" % address.encode())
                for name, value in {**self.session.headers, **headers}.items():
                    fh.write(b"%s: %s\r\n" % (name.encode(), value.encode()))
                fh.write(b"\r\n" + message)
            fake = requests.Response()  # zeep takes 202 without body as "no reply"
            fake.status_code, fake._content = 202, b""
            return fake
        self.last_response = super().post(address, message, headers)
        return self.last_response


def content_type_param(content_type, name):
    """The value of one parameter of a Content-Type header, or None."""
    for item in content_type.split(";")[1:]:
        key, _, value = item.strip().partition("=")
        if key.lower() == name:
            return value.strip('"')
    return None


def mtom_encode(envelope, action):
    """Turn a SOAP 1.2 envelope into an MTOM/XOP multipart/related body: the
    base64 text of each ContentContainer/Message|Attachment becomes a binary
    MIME part, replaced in the envelope by <xop:Include href="cid:..."/>.
    Returns (body, Content-Type). The root part comes first."""
    parts = []
    for el in envelope.iterfind(".//{%s}ContentContainer/*" % XTA):
        if el.tag in ("{%s}Message" % XTA, "{%s}Attachment" % XTA) and el.text:
            cid = "part%d.%s@poststelle.test" % (len(parts) + 1, uuid.uuid4().hex)
            parts.append((cid, "application/octet-stream", base64.b64decode(el.text)))
            el.text = None
            etree.SubElement(el, "{%s}Include" % XOP, nsmap={"xop": XOP}, href="cid:" + cid)
    root_cid = "root.%s@poststelle.test" % uuid.uuid4().hex
    root_type = 'application/xop+xml; charset=UTF-8; type="application/soap+xml"'
    parts.insert(0, (root_cid, root_type, etree_to_string(envelope)))
    boundary = "MIMEBoundary_" + uuid.uuid4().hex
    out = b""
    for cid, ctype, data in parts:
        out += b"--%s\r\nContent-Type: %s\r\nContent-Transfer-Encoding: binary\r\n" \
               b"Content-ID: <%s>\r\n\r\n%s\r\n" % (boundary.encode(), ctype.encode(),
                                                   cid.encode(), data)
    out += b"--%s--\r\n" % boundary.encode()
    content_type = ('multipart/related; type="application/xop+xml"; start="<%s>"; '
                    'start-info="application/soap+xml"; boundary=%s' % (root_cid, boundary))
    if action:  # SOAP 1.2's action parameter, on the outer type as CXF does
        content_type += '; action="%s"' % action
    return out, content_type


def soap_document(response):
    """The SOAP envelope of a raw response (its first part if multipart)."""
    content_type = response.headers.get("Content-Type", "")
    content = response.content
    if content_type.lower().startswith("multipart/"):
        content = MultipartDecoder(content, content_type).parts[0].content
    return etree.fromstring(content)


def msgbox_response(response):
    """The osci:MsgBoxResponse header of a raw response as a dict ({} if none).
    Read with lxml: zeep drops the ItemsPending choice when its value is 0."""
    try:
        box = soap_document(response).find("{%s}Header/{%s}MsgBoxResponse" % (SOAP12, OSCI))
    except (AttributeError, etree.XMLSyntaxError, ValueError):
        return {}
    if box is None:
        return {}
    out = {"request_id": box.get("MsgBoxRequestID")}
    if box.findtext("{%s}ItemsPending" % OSCI) is not None:
        out["items_pending"] = int(box.findtext("{%s}ItemsPending" % OSCI))
    if box.find("{%s}NoMessageAvailable" % OSCI) is not None:
        out["no_message_reason"] = box.find("{%s}NoMessageAvailable" % OSCI).get("reason")
    return out


def party(identifier):
    """An oscimeta:PartyType whose Identifier has type="xoev"."""
    return {"Identifier": {"_value_1": identifier, "type": "xoev"}}


def text(value):
    """The text of a zeep simpleContent value (wsa:AttributedURIType etc.)."""
    return getattr(value, "_value_1", value)


class Xta:
    """The zeep client and its transport, configured from the CLI options."""

    def __init__(self, args):
        wsdl = os.path.abspath(args.wsdl)
        self.transport = XtaTransport(os.path.dirname(wsdl), operation_timeout=args.timeout)
        session = self.transport.session
        # Else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment silently
        # replace session.verify, and *_PROXY could route loopback elsewhere.
        session.trust_env = False
        session.verify = args.ca or True
        if args.token:
            session.headers["Authorization"] = "Bearer " + args.token
        self.client = zeep.Client(wsdl, transport=self.transport)
        if args.no_wsa:
            # zeep applies zeep.wsa.WsAddressingPlugin by itself to every
            # operation whose portType input has wsam:Action (all of XTA's).
            for binding in self.client.wsdl.bindings.values():
                for operation in binding.all().values():
                    operation.abstract.wsa_action = None
        self.transport.dump_path = args.dump
        self.header = {"AuthorIdentifier": party(args.author)} if args.author else None
        self.base = (args.base or "").rstrip("/")

    def service(self, port):
        if not self.base:
            raise ClientError("--base is required")
        binding, path = PORTS[port]
        return self.client.create_service(binding, self.base + path)


def container_result(result, args, response):
    """Write a fetched ContentContainer's Message (and attachments) to files."""
    container = result["body"].ContentContainer if result and result["body"] else None
    if container is None:
        raise ClientError("response carries no ContentContainer (encrypted?)")
    data = container.Message._value_1 or b""
    with open(args.out, "wb") as fh:
        fh.write(data)
    attachments = container.Attachment or []
    for i, att in enumerate(attachments if args.attachments_dir else []):
        os.makedirs(args.attachments_dir, exist_ok=True)
        name = os.path.basename(att.filename or "attachment-%d" % (i + 1))
        with open(os.path.join(args.attachments_dir, name), "wb") as fh:
            fh.write(att._value_1 or b"")
    out = {"ok": True, "bytes": len(data), "attachments": len(attachments),
           "content_type": container.Message.contentType,
           "filename": container.Message.filename, **msgbox_response(response)}
    meta = result["header"].MessageMetaData if result["header"] is not None else None
    if meta is not None:
        out["message_id"] = text(meta.MsgIdentification.MessageID)
    return out


def run(args, xta):
    """Call the operation of args.command; return the JSON object to print."""
    cmd, hdr, dump = args.command, xta.header, args.dump
    last = lambda: xta.transport.last_response  # noqa: E731
    if cmd == "create-id":
        result = xta.service("management").createMessageId(_soapheaders=hdr)
        return dump or {"message_id": text(result)}
    if cmd == "check-account":
        xta.service("management").checkAccountActive(_soapheaders=hdr)
        return {"ok": True}
    if cmd == "lookup":
        result = xta.service("management").lookupService(
            LookupServiceRequestList=[{"LookupService": {
                "Reader": party(args.reader), "ServiceType": args.service}}],
            _soapheaders=hdr)
        if dump:
            return dump
        # zeep unwraps the one-child LookupServiceResultList into a list
        entry = (result if isinstance(result, list) else result.LookupServiceResult)[0]
        value = entry.IsServiceAvailableValue
        available = (None if getattr(value, "ServiceIsAvailableUnknown", None)
                     else bool(getattr(value, "ServiceIsAvailable", False)))
        params = [{"code": p.ParameterType.code, "list_uri": p.ParameterType.listURI,
                   "list_version": p.ParameterType.listVersionID,
                   "resource": base64.b64encode(p.Resource or b"").decode()}
                  for p in entry.ServiceParameter or []]
        return {"available": available, "parameters": params}
    if cmd == "send":
        if not args.author:
            raise ClientError("send needs --author (MessageMetaData/Originators/Author)")
        with open(args.file, "rb") as fh:
            message = fh.read()
        attachments = []
        for path in args.attachment:
            with open(path, "rb") as fh:
                attachments.append({
                    "_value_1": fh.read(), "filename": os.path.basename(path),
                    "contentType": mimetypes.guess_type(path)[0] or "application/octet-stream"})
        meta = {  # children in schema order; DeliveryAttributes requires nothing
            "DeliveryAttributes": {"Origin": datetime.now(timezone.utc).replace(microsecond=0)},
            "Originators": {"Author": party(args.author)},
            "Destinations": {"Reader": party(args.reader)},
            "MsgIdentification": {"MessageID": {"_value_1": args.message_id}},
            "Qualifier": {
                "Service": args.service,
                "BusinessScenario": {"Undefined": "poststelle-test"},
                "MessageType": {"code": args.message_type, "listURI": args.list_uri,
                                "listVersionID": args.list_version,
                                "payloadSchema": args.payload_schema}},
        }
        xta.transport.mtom = not args.inline
        xta.service("send").sendMessage(
            ContentContainer={"Message": {"_value_1": message, "contentType": "application/xml",
                                          "filename": os.path.basename(args.file)},
                              "Attachment": attachments},
            _soapheaders={"MessageMetaData": meta})
        return {"ok": True}
    if cmd == "report":
        result = xta.service("management").getTransportReport(args.message_id, _soapheaders=hdr)
        if dump:
            return dump
        node = soap_document(last()).find(".//{%s}TransportReport" % XTA)
        return {"status": int(result.MessageStatus.Status),
                "raw": etree.tostring(node, encoding="unicode")}
    if cmd == "cancel":
        xta.service("management").cancelMessage(args.message_id, _soapheaders=hdr)
        return dump or {"ok": True}
    if cmd == "status-list":
        result = xta.service("msgbox").getStatusList(
            maxListItems=args.max, ListForm="MessageMetaData", _soapheaders=hdr)
        if dump:
            return dump
        messages = [{"message_id": text(m.MsgIdentification.MessageID),
                     "author": m.Originators.Author.Identifier._value_1,
                     "reader": m.Destinations.Reader.Identifier._value_1,
                     "message_type": m.Qualifier.MessageType.code}
                    for m in result["body"].MessageMetaData or []]
        return {"messages": messages, **msgbox_response(last())}
    if cmd == "get":
        result = xta.service("msgbox").getMessage(
            MsgSelector={"MessageID": [{"_value_1": args.message_id}]}, _soapheaders=hdr)
        return dump or container_result(result, args, last())
    if cmd == "next":
        # LastMsgReceived sits in an optional sequence that zeep takes for
        # required: SkipValue leaves it out when no --last is given.
        received = [{"_value_1": m} for m in args.last] or zeep.xsd.SkipValue
        try:
            result = xta.service("msgbox").getNextMessage(
                MsgBoxRequestID=args.request_id, LastMsgReceived=received, _soapheaders=hdr)
        except Exception:  # an empty MsgBox may answer without a container
            result = None
            if "no_message_reason" not in msgbox_response(last()):
                raise
        if dump:
            return dump
        box = msgbox_response(last())
        if "no_message_reason" in box:
            return {"none": True, "reason": box["no_message_reason"],
                    "request_id": box.get("request_id")}
        return container_result(result, args, last())
    if cmd == "close":
        xta.service("msgbox").close(
            MsgBoxRequestID=args.request_id,
            LastMsgReceived=[{"_value_1": args.message_id}], _soapheaders=hdr)
        return {"ok": True}
    raise ClientError("unknown command %s" % cmd)


def fault_json(fault, response):
    """The JSON for a SOAP fault: code as its local name ("Sender"),
    subcodes as {namespace}local, and the XTA exception from the Detail."""
    out = {"fault": True, "code": (fault.code or "").rpartition(":")[2] or None,
           "subcodes": [getattr(q, "text", str(q)) for q in fault.subcodes or []],
           "reason": fault.message, "exception": None, "error_code": None, "problem": None,
           "http_status": response.status_code if response is not None else None}
    detail = fault.detail if isinstance(fault.detail, etree._Element) else None
    if detail is not None:
        for child in detail.iter("{%s}*" % XTA):
            if child.tag.endswith("Exception"):
                out["exception"] = etree.QName(child).localname
                out["error_code"] = child.findtext("{*}errorCode/code")  # code: unqualified
                break
        problem = detail.find(".//{%s}Problem" % PROBLEM)
        if problem is not None:
            out["problem"] = problem.get("code")
    return out


class JsonArgumentParser(argparse.ArgumentParser):
    """Usage errors, too, come out as one JSON object (exit 2)."""

    def error(self, message):
        print(json.dumps({"error": message}))
        sys.exit(2)


def add_common(parser, suppress):
    """The common options, accepted before or after the subcommand."""
    default = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    for name, help_text in (("--wsdl", "path of XTA.wsdl (loaded offline)"),
                            ("--base", "https://127.0.0.1:PORT"),
                            ("--ca", "PEM to verify the server's TLS certificate against"),
                            ("--token", "bearer token"),
                            ("--author", "author authority, e.g. psw:01003110"),
                            ("--dump", "write the HTTP request here instead of sending it")):
        parser.add_argument(name, default=default(None), help=help_text)
    parser.add_argument("--no-wsa", action="store_true", default=default(False),
                        help="omit the WS-Addressing headers")
    parser.add_argument("--timeout", type=float, default=default(60.0), help="seconds per call")


def parse_args(argv):
    parser = JsonArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=JsonArgumentParser)

    def command(name, *required):
        p = sub.add_parser(name)
        add_common(p, suppress=True)
        for option in required:
            p.add_argument(option, required=True)
        return p

    command("create-id")
    command("check-account")
    command("lookup", "--reader", "--service")
    p = command("send", "--file", "--reader", "--message-type", "--list-uri", "--list-version",
                "--payload-schema", "--service", "--message-id")
    p.add_argument("--attachment", action="append", default=[])
    p.add_argument("--inline", action="store_true", help="plain SOAP 1.2, inline base64")
    command("report", "--message-id")
    command("cancel", "--message-id")
    command("status-list").add_argument("--max", type=int, default=None)
    get, nxt = command("get", "--message-id", "--out"), command("next", "--out")
    for p in (get, nxt):
        p.add_argument("--attachments-dir", help="also write the attachments here")
    nxt.add_argument("--request-id", default=DEFAULT_REQUEST_ID)
    nxt.add_argument("--last", action="append", default=[],
                     help="LastMsgReceived: a message id already fetched")
    command("close", "--message-id").add_argument("--request-id", default=DEFAULT_REQUEST_ID)
    args = parser.parse_args(argv)
    if not args.wsdl:
        parser.error("--wsdl is required")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    xta = None
    try:
        xta = Xta(args)
        out = run(args, xta)
        if args.dump:
            out = {"dumped": args.dump}
    except Fault as fault:
        print(json.dumps(fault_json(fault, xta.transport.last_response if xta else None)))
        return 3
    except TransportError as exc:
        print(json.dumps({"error": str(exc), "http_status": exc.status_code}))
        return 2
    except Exception as exc:  # every other failure: exit 2
        print(json.dumps({"error": "%s: %s" % (type(exc).__name__, exc)}))
        return 2
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

// Independent XML Signature tool over the JDK's own javax.xml.crypto API (XMLSignatureFactory "DOM").
// Used by tests/e2e/xmlsec_interop.rs. Needs only a JDK >= 17, run as a single-file program:
//
//   java tests/interop/JdkDsig.java sign --key K.pk8.der|K.pem --cert C.pem [--alg rsa-pss-sha256|rsa-sha256|ecdsa-sha256] IN
//   java tests/interop/JdkDsig.java verify --cert C.pem IN       exit 0 valid, 1 invalid
//
// IN is a path or "-" (stdin); the signed document goes to stdout. Keys are unencrypted PKCS#8 (DER or PEM).
// Exit 2 on usage/setup errors.

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import javax.xml.XMLConstants;
import javax.xml.crypto.KeySelector;
import javax.xml.crypto.dsig.CanonicalizationMethod;
import javax.xml.crypto.dsig.DigestMethod;
import javax.xml.crypto.dsig.Reference;
import javax.xml.crypto.dsig.SignatureMethod;
import javax.xml.crypto.dsig.SignedInfo;
import javax.xml.crypto.dsig.Transform;
import javax.xml.crypto.dsig.XMLSignature;
import javax.xml.crypto.dsig.XMLSignatureFactory;
import javax.xml.crypto.dsig.dom.DOMSignContext;
import javax.xml.crypto.dsig.dom.DOMValidateContext;
import javax.xml.crypto.dsig.keyinfo.KeyInfo;
import javax.xml.crypto.dsig.keyinfo.KeyInfoFactory;
import javax.xml.crypto.dsig.keyinfo.X509Data;
import javax.xml.crypto.dsig.spec.C14NMethodParameterSpec;
import javax.xml.crypto.dsig.spec.TransformParameterSpec;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.transform.OutputKeys;
import javax.xml.transform.TransformerFactory;
import javax.xml.transform.dom.DOMSource;
import javax.xml.transform.stream.StreamResult;

import org.w3c.dom.Attr;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NamedNodeMap;
import org.w3c.dom.Node;
import org.w3c.dom.NodeList;

public class JdkDsig {
    static final Map<String, String> ALGS = Map.of(
            "rsa-pss-sha256", "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
            "rsa-sha256", SignatureMethod.RSA_SHA256,
            "ecdsa-sha256", SignatureMethod.ECDSA_SHA256);

    static final String[] ID_ATTRS = {"Id", "ID", "id"};

    public static void main(String[] argv) {
        int rc;
        try {
            rc = run(argv);
        } catch (Usage u) {
            System.err.println("usage: " + u.getMessage());
            rc = 2;
        } catch (Exception e) {
            System.err.println("error: " + e);
            rc = 2;
        }
        System.exit(rc);
    }

    static class Usage extends Exception {
        private static final long serialVersionUID = 1L;

        Usage(String m) {
            super(m);
        }
    }

    static int run(String[] argv) throws Exception {
        if (argv.length < 1) throw new Usage("JdkDsig sign|verify ...");
        Map<String, String> opts = new HashMap<>();
        String in = null;
        for (int i = 1; i < argv.length; i++) {
            if (argv[i].startsWith("--") && argv[i].length() > 2) {
                if (i + 1 >= argv.length) throw new Usage(argv[i] + " needs a value");
                opts.put(argv[i].substring(2), argv[++i]);
            } else if (in == null) {
                in = argv[i];
            } else {
                throw new Usage("unexpected argument " + argv[i]);
            }
        }
        if (in == null) throw new Usage("missing IN");
        switch (argv[0]) {
            case "sign":
                return sign(need(opts, "key"), need(opts, "cert"), opts.getOrDefault("alg", "rsa-pss-sha256"), in);
            case "verify":
                return verify(need(opts, "cert"), in);
            default:
                throw new Usage("unknown command " + argv[0]);
        }
    }

    static String need(Map<String, String> opts, String k) throws Usage {
        String v = opts.get(k);
        if (v == null) throw new Usage("missing --" + k);
        return v;
    }

    static byte[] readInput(String in) throws Exception {
        if (in.equals("-")) return System.in.readAllBytes();
        return Files.readAllBytes(Path.of(in));
    }

    static Document parse(byte[] data) throws Exception {
        DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();
        dbf.setNamespaceAware(true);
        dbf.setFeature(XMLConstants.FEATURE_SECURE_PROCESSING, true);
        dbf.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        dbf.setExpandEntityReferences(false);
        dbf.setXIncludeAware(false);
        return dbf.newDocumentBuilder().parse(new ByteArrayInputStream(data));
    }

    static X509Certificate readCert(String path) throws Exception {
        try (InputStream is = Files.newInputStream(Path.of(path))) {
            return (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(is);
        }
    }

    static PrivateKey readKey(String path) throws Exception {
        byte[] raw = Files.readAllBytes(Path.of(path));
        String text = new String(raw, StandardCharsets.US_ASCII);
        if (text.contains("-----BEGIN PRIVATE KEY-----")) {
            String b64 = text.substring(text.indexOf("-----BEGIN PRIVATE KEY-----") + 27, text.indexOf("-----END PRIVATE KEY-----"));
            raw = Base64.getMimeDecoder().decode(b64);
        } else if (text.contains("-----BEGIN")) {
            throw new Usage(path + ": only unencrypted PKCS#8 keys (BEGIN PRIVATE KEY or DER) are supported");
        }
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(raw);
        for (String alg : new String[] {"RSA", "EC", "RSASSA-PSS"}) {
            try {
                return KeyFactory.getInstance(alg).generatePrivate(spec);
            } catch (java.security.spec.InvalidKeySpecException e) {
                // try the next key type
            }
        }
        throw new Usage(path + ": not an RSA or EC PKCS#8 private key");
    }

    static void write(Document doc) throws Exception {
        javax.xml.transform.Transformer t = TransformerFactory.newInstance().newTransformer();
        t.setOutputProperty(OutputKeys.ENCODING, "UTF-8");
        t.setOutputProperty(OutputKeys.OMIT_XML_DECLARATION, "no");
        t.setOutputProperty(OutputKeys.INDENT, "no");
        ByteArrayOutputStream bos = new ByteArrayOutputStream();
        t.transform(new DOMSource(doc), new StreamResult(bos));
        System.out.write(bos.toByteArray());
        System.out.flush();
    }

    static int sign(String keyPath, String certPath, String alg, String in) throws Exception {
        String sigUri = ALGS.get(alg);
        if (sigUri == null) throw new Usage("unknown --alg " + alg);
        PrivateKey key = readKey(keyPath);
        X509Certificate cert = readCert(certPath);
        Document doc = parse(readInput(in));

        XMLSignatureFactory fac = XMLSignatureFactory.getInstance("DOM");
        List<Transform> transforms = List.of(
                fac.newTransform(Transform.ENVELOPED, (TransformParameterSpec) null),
                fac.newTransform(CanonicalizationMethod.EXCLUSIVE, (TransformParameterSpec) null));
        Reference ref = fac.newReference("", fac.newDigestMethod(DigestMethod.SHA256, null), transforms, null, null);
        SignedInfo si = fac.newSignedInfo(
                fac.newCanonicalizationMethod(CanonicalizationMethod.EXCLUSIVE, (C14NMethodParameterSpec) null),
                fac.newSignatureMethod(sigUri, null),
                List.of(ref));
        KeyInfoFactory kif = fac.getKeyInfoFactory();
        X509Data xd = kif.newX509Data(List.of(cert));
        KeyInfo ki = kif.newKeyInfo(List.of(xd));
        DOMSignContext ctx = new DOMSignContext(key, doc.getDocumentElement());
        ctx.setDefaultNamespacePrefix("ds");
        fac.newXMLSignature(si, ki).sign(ctx);
        write(doc);
        return 0;
    }

    static void registerIds(Element e) {
        NamedNodeMap attrs = e.getAttributes();
        for (int i = 0; i < attrs.getLength(); i++) {
            Attr a = (Attr) attrs.item(i);
            if (a.getNamespaceURI() == null) {
                for (String n : ID_ATTRS) {
                    if (n.equals(a.getLocalName())) e.setIdAttributeNode(a, true);
                }
            }
        }
        for (Node c = e.getFirstChild(); c != null; c = c.getNextSibling()) {
            if (c instanceof Element) registerIds((Element) c);
        }
    }

    static int verify(String certPath, String in) throws Exception {
        X509Certificate cert = readCert(certPath);
        Document doc;
        try {
            doc = parse(readInput(in));
        } catch (org.xml.sax.SAXException e) {
            System.err.println("invalid: not well-formed: " + e.getMessage());
            return 1;
        }
        NodeList nl = doc.getElementsByTagNameNS(XMLSignature.XMLNS, "Signature");
        if (nl.getLength() != 1) {
            System.err.println("invalid: expected exactly one ds:Signature, found " + nl.getLength());
            return 1;
        }
        Element root = doc.getDocumentElement();
        registerIds(root);
        // Pinned key: the public key of --cert; KeyInfo in the document is ignored.
        DOMValidateContext ctx = new DOMValidateContext(KeySelector.singletonKeySelector(cert.getPublicKey()), nl.item(0));
        ctx.setProperty("org.jcp.xml.dsig.secureValidation", Boolean.TRUE);
        XMLSignatureFactory fac = XMLSignatureFactory.getInstance("DOM");
        XMLSignature sig;
        boolean ok;
        try {
            sig = fac.unmarshalXMLSignature(ctx);
            ok = sig.validate(ctx);
        } catch (javax.xml.crypto.MarshalException | javax.xml.crypto.dsig.XMLSignatureException e) {
            System.err.println("invalid: " + e);
            return 1;
        }
        if (!ok) {
            List<String> why = new ArrayList<>();
            if (!sig.getSignatureValue().validate(ctx)) why.add("SignatureValue");
            for (Object o : sig.getSignedInfo().getReferences()) {
                Reference r = (Reference) o;
                if (!r.validate(ctx)) why.add("Reference URI=\"" + r.getURI() + "\" digest");
            }
            System.err.println("invalid: " + String.join(", ", why) + " does not match");
            return 1;
        }
        boolean coversRoot = false;
        for (Object o : sig.getSignedInfo().getReferences()) {
            String uri = ((Reference) o).getURI();
            if (uri != null && uri.isEmpty()) coversRoot = true;
            for (String n : ID_ATTRS) {
                if (uri != null && root.hasAttribute(n) && uri.equals("#" + root.getAttribute(n))) coversRoot = true;
            }
        }
        if (!coversRoot) {
            System.err.println("invalid: no reference covers the root element");
            return 1;
        }
        System.out.println("valid: " + cert.getSubjectX500Principal().getName()
                + " (" + sig.getSignedInfo().getSignatureMethod().getAlgorithm() + ")");
        return 0;
    }
}

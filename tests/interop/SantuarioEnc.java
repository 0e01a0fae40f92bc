// Independent XML Encryption tool over Apache Santuario (xml-security-java, XMLCipher).
// Used by tests/e2e/xmlsec_interop.rs. Run as a single-file program with Santuario on the class path
// (Debian: apt-get install libxml-security-java libslf4j-java):
//
//   java -cp /usr/share/java/xmlsec.jar:/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-nop.jar \
//        tests/interop/SantuarioEnc.java encrypt --cert C.pem IN
//   java -cp ... tests/interop/SantuarioEnc.java decrypt --key K.pk8.der|K.pem IN
//
// encrypt: the root element becomes xenc:EncryptedData (Type #Element, aes256-gcm) whose ds:KeyInfo holds
// an xenc:EncryptedKey (xmlenc11#rsa-oaep, ds:DigestMethod sha256, xenc11:MGF mgf1sha256) with the
// recipient certificate in its own ds:KeyInfo/ds:X509Data.
// decrypt: every xenc:EncryptedData is decrypted in place (secure validation on). Exit 0 ok,
// 1 cannot decrypt (stderr "error: decryption-failed: ..."), 2 usage/setup error.

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

import javax.crypto.KeyGenerator;
import javax.crypto.SecretKey;
import javax.xml.XMLConstants;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.transform.OutputKeys;
import javax.xml.transform.TransformerFactory;
import javax.xml.transform.dom.DOMSource;
import javax.xml.transform.stream.StreamResult;

import org.apache.xml.security.encryption.EncryptedData;
import org.apache.xml.security.encryption.EncryptedKey;
import org.apache.xml.security.encryption.XMLCipher;
import org.apache.xml.security.keys.KeyInfo;
import org.apache.xml.security.keys.content.X509Data;
import org.apache.xml.security.utils.EncryptionConstants;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

public class SantuarioEnc {
    static final String SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256";

    public static void main(String[] argv) {
        int rc;
        try {
            org.apache.xml.security.Init.init();
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
        if (argv.length < 1) throw new Usage("SantuarioEnc encrypt|decrypt ...");
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
            case "encrypt":
                return encrypt(need(opts, "cert"), in);
            case "decrypt":
                return decrypt(need(opts, "key"), in);
            default:
                throw new Usage("unknown command " + argv[0]);
        }
    }

    static String need(Map<String, String> opts, String k) throws Usage {
        String v = opts.get(k);
        if (v == null) throw new Usage("missing --" + k);
        return v;
    }

    static Document parse(String in) throws Exception {
        byte[] data = in.equals("-") ? System.in.readAllBytes() : Files.readAllBytes(Path.of(in));
        DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();
        dbf.setNamespaceAware(true);
        dbf.setFeature(XMLConstants.FEATURE_SECURE_PROCESSING, true);
        dbf.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        dbf.setExpandEntityReferences(false);
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
        for (String alg : new String[] {"RSA", "EC"}) {
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

    static int encrypt(String certPath, String in) throws Exception {
        X509Certificate cert = readCert(certPath);
        Document doc = parse(in);

        KeyGenerator kg = KeyGenerator.getInstance("AES");
        kg.init(256);
        SecretKey cek = kg.generateKey();

        // Key transport: RSA-OAEP (XML Encryption 1.1) with SHA-256 digest and MGF1 with SHA-256.
        XMLCipher keyCipher = XMLCipher.getInstance(XMLCipher.RSA_OAEP_11, null, SHA256);
        keyCipher.init(XMLCipher.WRAP_MODE, cert.getPublicKey());
        EncryptedKey ek = keyCipher.encryptKey(doc, cek, EncryptionConstants.MGF1_SHA256, null);
        KeyInfo ekInfo = new KeyInfo(doc);
        X509Data x509 = new X509Data(doc);
        x509.addCertificate(cert);
        ekInfo.add(x509);
        ek.setKeyInfo(ekInfo);

        XMLCipher dataCipher = XMLCipher.getInstance(XMLCipher.AES_256_GCM);
        dataCipher.init(XMLCipher.ENCRYPT_MODE, cek);
        EncryptedData ed = dataCipher.getEncryptedData();
        KeyInfo edInfo = new KeyInfo(doc);
        edInfo.add(ek);
        ed.setKeyInfo(edInfo);
        dataCipher.doFinal(doc, doc.getDocumentElement(), false);
        write(doc);
        return 0;
    }

    static int decrypt(String keyPath, String in) throws Exception {
        PrivateKey key = readKey(keyPath);
        Document doc;
        try {
            doc = parse(in);
        } catch (org.xml.sax.SAXException e) {
            System.err.println("error: not-well-formed: " + e.getMessage());
            return 1;
        }
        NodeList nl = doc.getElementsByTagNameNS(EncryptionConstants.EncryptionSpecNS, EncryptionConstants._TAG_ENCRYPTEDDATA);
        List<Element> eds = new ArrayList<>();
        for (int i = 0; i < nl.getLength(); i++) eds.add((Element) nl.item(i));
        if (eds.isEmpty()) {
            System.err.println("error: no xenc:EncryptedData");
            return 1;
        }
        for (Element ed : eds) {
            try {
                XMLCipher c = XMLCipher.getInstance();
                c.setSecureValidation(true);
                c.init(XMLCipher.DECRYPT_MODE, null);
                c.setKEK(key);
                c.doFinal(doc, ed);
            } catch (Exception e) {
                System.err.println("error: decryption-failed: " + e);
                return 1;
            }
        }
        write(doc);
        return 0;
    }
}

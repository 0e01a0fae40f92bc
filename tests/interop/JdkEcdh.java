// An independent check of ECDH-ES key agreement in XML Encryption 1.1, built only on the JDK
// (java.security / javax.crypto: ECDH, MessageDigest, AESWrap, AES/GCM), none of our code and no
// XML security library: it opens the first EncryptedData of a document whose EncryptedKey is
// wrapped (kw-aes128/192/256) with a key agreed by ECDH-ES (the originator's key an ECKeyValue
// on P-256/P-384/P-521) and derived by ConcatKDF (SHA-256/384/512; AlgorithmID, PartyUInfo,
// PartyVInfo as whole-octet bit strings), and prints the plaintext.
//
//   java tests/interop/JdkEcdh.java decrypt --key KEY.pk8.der IN
//
// Exit 0 with the plaintext on stdout; 1 when it cannot be decrypted; 2 on usage errors.
// Used by tests/e2e/xmlsec_interop.rs; single-file source launch, no build step.

import java.io.ByteArrayOutputStream;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.AlgorithmParameters;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.interfaces.ECPrivateKey;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.Map;
import javax.crypto.Cipher;
import javax.crypto.KeyAgreement;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import javax.xml.parsers.DocumentBuilderFactory;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.Node;

public class JdkEcdh {
    static final String XENC = "http://www.w3.org/2001/04/xmlenc#";
    static final String XENC11 = "http://www.w3.org/2009/xmlenc11#";
    static final String DS = "http://www.w3.org/2000/09/xmldsig#";
    static final String DS11 = "http://www.w3.org/2009/xmldsig11#";
    static final Map<String, String> CURVES = Map.of(
        "urn:oid:1.2.840.10045.3.1.7", "secp256r1",
        "urn:oid:1.3.132.0.34", "secp384r1",
        "urn:oid:1.3.132.0.35", "secp521r1");
    static final Map<String, String> DIGESTS = Map.of(
        "http://www.w3.org/2001/04/xmlenc#sha256", "SHA-256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384", "SHA-384",
        "http://www.w3.org/2001/04/xmlenc#sha512", "SHA-512");
    static final Map<String, Integer> WRAPS = Map.of(
        XENC + "kw-aes128", 16, XENC + "kw-aes192", 24, XENC + "kw-aes256", 32);

    public static void main(String[] args) throws Exception {
        if (args.length != 4 || !args[0].equals("decrypt") || !args[1].equals("--key")) {
            System.err.println("usage: JdkEcdh decrypt --key KEY.pk8.der IN");
            System.exit(2);
        }
        PrivateKey key = KeyFactory.getInstance("EC")
            .generatePrivate(new PKCS8EncodedKeySpec(Files.readAllBytes(Path.of(args[2]))));
        DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
        f.setNamespaceAware(true);
        f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        Document doc = f.newDocumentBuilder().parse(Path.of(args[3]).toFile());
        try {
            System.out.write(decrypt(doc, key));
            System.out.flush();
        } catch (Exception e) {
            System.err.println("error: cannot decrypt: " + e);
            System.exit(1);
        }
    }

    static Element child(Node parent, String ns, String local) {
        for (Node n = parent.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element e && ns.equals(e.getNamespaceURI()) && local.equals(e.getLocalName())) {
                return e;
            }
        }
        throw new IllegalArgumentException("no " + local + " in " + parent.getLocalName());
    }

    static byte[] b64(Element e) {
        return Base64.getMimeDecoder().decode(e.getTextContent().replaceAll("\\s", ""));
    }

    /** A ConcatKDFParams attribute: hex, a first octet of 0 (no padding bits), then the bytes. */
    static byte[] bits(Element params, String name) {
        String hex = params.getAttribute(name).trim();
        if (hex.isEmpty()) return new byte[0];
        byte[] all = new BigInteger("01" + hex, 16).toByteArray();
        if (all[1] != 0) throw new IllegalArgumentException(name + ": padding bits");
        return java.util.Arrays.copyOfRange(all, 2, all.length);
    }

    static byte[] decrypt(Document doc, PrivateKey key) throws Exception {
        Element data = (Element) doc.getElementsByTagNameNS(XENC, "EncryptedData").item(0);
        String dataAlg = child(data, XENC, "EncryptionMethod").getAttribute("Algorithm");
        Element ek = child(child(data, DS, "KeyInfo"), XENC, "EncryptedKey");
        Integer kekLen = WRAPS.get(child(ek, XENC, "EncryptionMethod").getAttribute("Algorithm"));
        Element am = child(child(ek, DS, "KeyInfo"), XENC, "AgreementMethod");
        if (kekLen == null || !am.getAttribute("Algorithm").equals(XENC11 + "ECDH-ES")) {
            throw new IllegalArgumentException("not kw-aes with ECDH-ES");
        }
        Element kdm = child(am, XENC11, "KeyDerivationMethod");
        if (!kdm.getAttribute("Algorithm").equals(XENC11 + "ConcatKDF")) throw new IllegalArgumentException("not ConcatKDF");
        Element params = child(kdm, XENC11, "ConcatKDFParams");
        String digest = DIGESTS.get(child(params, DS, "DigestMethod").getAttribute("Algorithm"));
        ByteArrayOutputStream info = new ByteArrayOutputStream();
        for (String a : new String[] {"AlgorithmID", "PartyUInfo", "PartyVInfo", "SuppPubInfo", "SuppPrivInfo"}) {
            info.write(bits(params, a));
        }
        Element ec = child(child(child(am, XENC, "OriginatorKeyInfo"), DS, "KeyValue"), DS11, "ECKeyValue");
        String curve = CURVES.get(child(ec, DS11, "NamedCurve").getAttribute("URI").trim());
        byte[] point = b64(child(ec, DS11, "PublicKey"));

        // The originator's public key on the curve, uncompressed point 04 || X || Y.
        AlgorithmParameters ap = AlgorithmParameters.getInstance("EC");
        ap.init(new ECGenParameterSpec(curve));
        ECParameterSpec spec = ap.getParameterSpec(ECParameterSpec.class);
        int n = (point.length - 1) / 2;
        if (point[0] != 4 || point.length != 2 * n + 1) throw new IllegalArgumentException("not an uncompressed point");
        ECPoint w = new ECPoint(new BigInteger(1, java.util.Arrays.copyOfRange(point, 1, 1 + n)),
            new BigInteger(1, java.util.Arrays.copyOfRange(point, 1 + n, point.length)));
        PublicKey originator = KeyFactory.getInstance("EC").generatePublic(new ECPublicKeySpec(w, spec));
        if (((ECPrivateKey) key).getParams().getCurve().getField().getFieldSize() != spec.getCurve().getField().getFieldSize()) {
            throw new IllegalArgumentException("the key is on another curve");
        }
        KeyAgreement ka = KeyAgreement.getInstance("ECDH");
        ka.init(key);
        ka.doPhase(originator, true);
        byte[] z = ka.generateSecret();

        // ConcatKDF (NIST SP 800-56A): Hash(counter || Z || FixedInfo) for counter = 1, 2, ...
        MessageDigest md = MessageDigest.getInstance(digest);
        ByteArrayOutputStream derived = new ByteArrayOutputStream();
        for (int counter = 1; derived.size() < kekLen; counter++) {
            md.update(ByteBuffer.allocate(4).putInt(counter).array());
            md.update(z);
            md.update(info.toByteArray());
            derived.write(md.digest());
        }
        byte[] kek = java.util.Arrays.copyOf(derived.toByteArray(), kekLen);

        Cipher unwrap = Cipher.getInstance("AESWrap");
        unwrap.init(Cipher.UNWRAP_MODE, new SecretKeySpec(kek, "AES"));
        byte[] cek = unwrap.unwrap(b64(child(child(ek, XENC, "CipherData"), XENC, "CipherValue")), "AES", Cipher.SECRET_KEY)
            .getEncoded();
        if (!dataAlg.startsWith(XENC11 + "aes") || !dataAlg.endsWith("-gcm")) throw new IllegalArgumentException("not AES-GCM");
        byte[] value = b64(child(child(data, XENC, "CipherData"), XENC, "CipherValue"));
        Cipher gcm = Cipher.getInstance("AES/GCM/NoPadding");
        gcm.init(Cipher.DECRYPT_MODE, new SecretKeySpec(cek, "AES"), new GCMParameterSpec(128, value, 0, 12));
        return gcm.doFinal(value, 12, value.length - 12);
    }
}

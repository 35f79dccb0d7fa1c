package dev.memgen.rpc;

import java.io.IOException;
import java.io.StringWriter;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.Date;
import java.util.concurrent.atomic.AtomicLong;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * A certificate authority made by a test, and the PEM files the TLS tests need: a server certificate for
 * localhost / 127.0.0.1, client certificates for mutual TLS, and certificates that must be refused (expired, or from
 * another authority). Files go under one directory: {@code NAME.crt} and {@code NAME.key}.
 */
public final class TestPki {
  private static final AtomicLong SERIAL = new AtomicLong(System.currentTimeMillis());
  private final Path dir;
  private final String name;
  private final KeyPair caKeys;
  private final X509Certificate ca;

  /** A new authority {@code name}, its certificate at {@code dir/NAME.crt}. */
  public TestPki(Path dir, String name) throws IOException, GeneralSecurityException {
    this.dir = Files.createDirectories(dir);
    this.name = name;
    caKeys = keys();
    X500Name subject = new X500Name("CN=" + name);
    Instant now = Instant.now();
    X509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(subject, serial(), Date.from(now.minusSeconds(60)),
        Date.from(now.plus(Duration.ofDays(2))), subject, caKeys.getPublic());
    b.addExtension(Extension.basicConstraints, true, new BasicConstraints(true));
    b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
    ca = sign(b, caKeys.getPrivate());
    write(ca, dir.resolve(name + ".crt"));
  }

  /** The authority's certificate (PEM), what a peer trusts. */
  public Path caCert() {
    return dir.resolve(name + ".crt");
  }

  /** The authority's certificate in a PKCS#12 trust store (for servers that take no PEM trust, as Quarkus's gRPC). */
  public Path trustStore(String password) throws IOException, GeneralSecurityException {
    java.security.KeyStore ks = java.security.KeyStore.getInstance("PKCS12");
    ks.load(null, null);
    ks.setCertificateEntry(name, ca);
    Path out = dir.resolve(name + "-trust.p12");
    try (var o = Files.newOutputStream(out)) {
      ks.store(o, password.toCharArray());
    }
    return out;
  }

  /** A certificate for localhost and 127.0.0.1 valid now, issued by this authority. */
  public Path issue(String file) throws IOException, GeneralSecurityException {
    Instant now = Instant.now();
    return issue(file, now.minusSeconds(60), now.plus(Duration.ofDays(1)));
  }

  /** A certificate for localhost that expired an hour ago. */
  public Path issueExpired(String file) throws IOException, GeneralSecurityException {
    Instant now = Instant.now();
    return issue(file, now.minus(Duration.ofDays(2)), now.minus(Duration.ofHours(1)));
  }

  /** The private key (PKCS#8 PEM) of a certificate this authority issued. */
  public Path key(String file) {
    return dir.resolve(file + ".key");
  }

  private Path issue(String file, Instant from, Instant to) throws IOException, GeneralSecurityException {
    KeyPair k = keys();
    X509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(ca, serial(), Date.from(from), Date.from(to),
        new X500Name("CN=" + file), k.getPublic());
    b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(new GeneralName[] {
        new GeneralName(GeneralName.dNSName, "localhost"), new GeneralName(GeneralName.iPAddress, "127.0.0.1")}));
    b.addExtension(Extension.basicConstraints, true, new BasicConstraints(false));
    X509Certificate cert = sign(b, caKeys.getPrivate());
    Path out = dir.resolve(file + ".crt");
    write(cert, out);
    write(k.getPrivate(), key(file));
    return out;
  }

  private static KeyPair keys() throws GeneralSecurityException {
    KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
    g.initialize(256);
    return g.generateKeyPair();
  }

  private static BigInteger serial() {
    return BigInteger.valueOf(SERIAL.incrementAndGet());
  }

  private static X509Certificate sign(X509v3CertificateBuilder b, PrivateKey key) throws GeneralSecurityException {
    try {
      ContentSigner signer = new JcaContentSignerBuilder("SHA256withECDSA").build(key);
      return new JcaX509CertificateConverter().getCertificate(b.build(signer));
    } catch (org.bouncycastle.operator.OperatorCreationException e) {
      throw new GeneralSecurityException(e);
    }
  }

  private static void write(Object pem, Path file) throws IOException {
    StringWriter s = new StringWriter();
    try (JcaPEMWriter w = new JcaPEMWriter(s)) {
      w.writeObject(pem instanceof PrivateKey k ? new org.bouncycastle.openssl.jcajce.JcaPKCS8Generator(k, null) : pem);
    }
    Files.writeString(file, s.toString());
  }
}

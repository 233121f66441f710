import Crypto
import Foundation
import NIOSSL
import PosternCore
import X509

/// The server's TLS key and certificate chain, and the fingerprint mediators pin.
public struct ServerIdentity: Sendable {
    public let certificateChain: [NIOSSLCertificate]
    public let privateKey: NIOSSLPrivateKey
    public let fingerprint: KeyFingerprint

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// A certificate chain (leaf first) and key in PEM files, e.g. from a real CA.
    public static func load(certificateFile: String, keyFile: String) throws -> ServerIdentity {
        try FilePermissions.checkPrivate(keyFile, what: "TLS key file")
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw Failure(description: "cannot read the TLS certificate \(certificateFile): \(TLSErrorText.describe(error))")
        }
        guard let leaf = chain.first else { throw Failure(description: "\(certificateFile) holds no certificate") }
        let keyText: String
        do {
            keyText = try String(contentsOfFile: keyFile, encoding: .utf8)
            key = try NIOSSLPrivateKey(bytes: Array(keyText.utf8), format: .pem)
        } catch {
            throw Failure(description: "cannot read the TLS key \(keyFile): \(TLSErrorText.describe(error))")
        }
        let fingerprint = try Self.fingerprint(of: leaf)
        // A key that does not belong to the certificate fails every handshake: catch it at start. Key
        // types swift-certificates cannot read are left to the handshake.
        if let parsedKey = try? Certificate.PrivateKey(pemEncoded: keyText),
            let parsedLeaf = try? Certificate(derEncoded: try leaf.toDERBytes()),
            parsedKey.publicKey != parsedLeaf.publicKey
        {
            throw Failure(description: "the TLS key \(keyFile) does not belong to the certificate \(certificateFile)")
        }
        return ServerIdentity(certificateChain: chain, privateKey: key, fingerprint: fingerprint)
    }

    /// The key and self-signed certificate in `directory` (server.key, server.crt), made on first use
    /// (valid from `now`). Returns whether they were just created.
    public static func loadOrCreate(directory: String, now: Date) throws -> (ServerIdentity, created: Bool) {
        let keyFile = directory + "/server.key"
        let certificateFile = directory + "/server.crt"
        let fm = FileManager.default
        if fm.fileExists(atPath: keyFile) || fm.fileExists(atPath: certificateFile) {
            return (try load(certificateFile: certificateFile, keyFile: keyFile), false)
        }
        try PrivateDirectory.create(
            directory, what: "the state directory", hint: "choose one with --state-dir DIR or $POSTERN_STATE_DIR")
        let (certificatePEM, keyPEM) = try makeSelfSigned(now: now)
        try FilePermissions.writeNew(keyFile, keyPEM, mode: 0o600)
        try FilePermissions.writeNew(certificateFile, certificatePEM, mode: 0o644)
        return (try load(certificateFile: certificateFile, keyFile: keyFile), true)
    }

    /// A P-256 key and a self-signed certificate for it, valid for 20 years: mediators pin the key,
    /// so no name or expiry checks depend on it.
    static func makeSelfSigned(now: Date) throws -> (certificate: String, key: String) {
        let key = P256.Signing.PrivateKey()
        let certificateKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName {
            OrganizationName("postern")
            CommonName("postern server")
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: certificateKey.publicKey,
            notValidBefore: now - 3600,
            notValidAfter: now + 20 * 365 * 86400,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.dnsName("postern-server")])
            },
            issuerPrivateKey: certificateKey)
        return (try certificate.serializeAsPEM().pemString + "\n", key.pemRepresentation + "\n")
    }

    public static func fingerprint(of certificate: NIOSSLCertificate) throws -> KeyFingerprint {
        KeyFingerprint(subjectPublicKeyInfo: try certificate.extractPublicKey().toSPKIBytes())
    }
}

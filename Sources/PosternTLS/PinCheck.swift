import Logging
import NIOCore
import NIOSSL
import NIOTLS
import PosternCore
import PosternTunnel
import X509

/// One client handshake's key check and what it saw. Runs on the channel's event loop.
final class PinCheck: @unchecked Sendable {
    let server: String
    let trust: ServerTrust
    private(set) var presented: KeyFingerprint?
    private(set) var refusal: String?

    init(server: String, trust: ServerTrust) {
        self.server = server
        self.trust = trust
    }

    func verify(_ certificates: [NIOSSLCertificate]) -> NIOSSLVerificationResult {
        guard let leaf = certificates.first, let fingerprint = try? ServerIdentity.fingerprint(of: leaf) else {
            refusal = "the server at \(server) presented no usable certificate"
            return .failed
        }
        presented = fingerprint
        if trust.accepts(fingerprint) { return .certificateVerified }
        if case .pinned(let pin, let source) = trust {
            refusal = """
                REFUSING the server at \(server): it presented TLS key \(fingerprint), but \(pin) is pinned \
                (\(source)). Someone may be intercepting the tunnel. If the server's key was changed on purpose, \
                pin the new key (--server-fingerprint, or remove the line for \(server) from the known-servers file).
                """
        }
        return .failed
    }

    /// After a handshake with standard (CA) verification, the key is read from the handler.
    func handshakeCompleted(peer: NIOSSLCertificate?) {
        if presented == nil, let peer { presented = try? ServerIdentity.fingerprint(of: peer) }
    }
}

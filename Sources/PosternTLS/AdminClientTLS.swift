import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import PosternCore

/// TLS for `postern ctl` toward an admin API served over TLS (`server --admin-tls`): TLS 1.3, and
/// the server is verified one way or another, never not at all. A pin compares the key and nothing
/// else (the server's own key is usually self-signed, as for the tunnel); a CA file checks the
/// chain and that the certificate names the host dialled.
public struct AdminClientTLS: Sendable {
    public enum Trust: Sendable {
        /// This key (`--admin-pin`, or the key of the server's certificate in its state directory);
        /// `source` says where the pin came from, for the refusal.
        case pinned(KeyFingerprint, source: String)
        /// `--admin-ca FILE`.
        case certificateAuthority(file: String)
    }

    public let trust: Trust
    private let context: NIOSSLContext

    public init(trust: Trust) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.shutdownTimeout = .seconds(1)
        switch trust {
        case .certificateAuthority(let file):
            configuration.trustRoots = .certificates(try caRoots(file, what: "admin CA file"))
            configuration.certificateVerification = .fullVerification
        case .pinned:
            // The verification callback compares the key and nothing else.
            configuration.certificateVerification = .noHostnameVerification
        }
        self.trust = trust
        self.context = try NIOSSLContext(configuration: configuration)
    }

    /// One connection's TLS handler, and the check that can tell afterwards why it failed.
    public func handler(host: String, port: Int) throws -> (ChannelHandler, Check) {
        let check = Check(server: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
        let isIP = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        switch trust {
        case .certificateAuthority:
            // An IP address is checked against the certificate's IP entries; it never goes in SNI.
            return (try NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : host), check)
        case .pinned(let pin, let source):
            let handler = try NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : host) { certificates, promise in
                promise.succeed(check.verify(certificates, pin: pin, source: source))
            }
            return (handler, check)
        }
    }

    /// What one handshake's key check found.
    public final class Check: Sendable {
        let server: String
        private let refused = NIOLockedValueBox<String?>(nil)

        init(server: String) {
            self.server = server
        }

        func verify(_ certificates: [NIOSSLCertificate], pin: KeyFingerprint, source: String) -> NIOSSLVerificationResult {
            guard let leaf = certificates.first, let presented = try? ServerIdentity.fingerprint(of: leaf) else {
                refused.withLockedValue { $0 = "the admin API at \(server) presented no usable certificate" }
                return .failed
            }
            if presented == pin { return .certificateVerified }
            refused.withLockedValue {
                $0 =
                    "REFUSING the admin API at \(server): it presented TLS key \(presented), but \(pin) is pinned (\(source)); nothing was sent"
            }
            return .failed
        }

        /// A sentence for a failed connection: the pin refusal if there was one, else the TLS error's.
        public func describe(_ error: Error) -> String {
            if let text = refused.withLockedValue({ $0 }) { return text }
            guard TLSErrorText.isTLSError(error) else { return "\(error)" }
            let text = TLSErrorText.describe(error)
            if text.contains("--ca-file") { return text.replacingOccurrences(of: "--ca-file", with: "--admin-ca") }
            if text.contains("does not speak TLS") {
                return "TLS handshake failed: the admin API does not speak TLS (use http://, or start the server with --admin-tls)"
            }
            return text
        }
    }
}

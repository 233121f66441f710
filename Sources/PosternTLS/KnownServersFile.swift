import Foundation
import NIOConcurrencyHelpers
import NIOSSL
import PosternCore

/// The known-servers file on disk (trust on first use). Read once at start; a first-seen key is added
/// in memory and written back atomically.
public final class KnownServersFile: Sendable {
    public let path: String
    private let state: NIOLockedValueBox<KnownServers>

    /// Reads `path`; a missing file is an empty record. A malformed file is an error: a pin that
    /// silently stopped applying would be worse than not starting.
    public init(path: String) throws {
        self.path = path
        if FileManager.default.fileExists(atPath: path) {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw TransportErrorText("cannot read the known-servers file \(path): \(error.localizedDescription)")
            }
            state = NIOLockedValueBox(try KnownServers(parsing: text, source: path))
        } else {
            state = NIOLockedValueBox(KnownServers())
        }
    }

    public func fingerprint(for server: String) -> KeyFingerprint? {
        state.withLockedValue { $0.fingerprint(for: server) }
    }

    /// Records a first-seen server's key and writes the file.
    public func record(_ fingerprint: KeyFingerprint, for server: String) throws {
        let text = state.withLockedValue { record -> String? in
            guard record.fingerprint(for: server) == nil else { return nil }
            record.record(fingerprint, for: server)
            return record.rendered()
        }
        if let text { try FilePermissions.replace(path, text, mode: 0o600) }
    }
}

struct TransportErrorText: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Sentences for TLS failures, with the likely cause.
enum TLSErrorText {
    static func isTLSError(_ error: Error) -> Bool {
        error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError
    }

    static func describe(_ error: Error, client: Bool = true) -> String { classify(error, client: client).text }

    /// The sentence, and whether it is about trust (a certificate refused by either end): retrying
    /// cannot fix that, so the mediator stops.
    static func classify(_ error: Error, client: Bool = true) -> (text: String, trust: Bool) {
        let text = "\(error)"
        let upper = text.uppercased()
        if upper.contains("WRONG_VERSION_NUMBER") || upper.contains("HTTP_REQUEST") || upper.contains("PACKET_LENGTH_TOO_LONG")
            || upper.contains("RECORD_LENGTH_MISMATCH")
        {
            return ("TLS handshake failed: the peer does not speak TLS (is one end running with --insecure?)", false)
        }
        if upper.contains("UNSUPPORTED_PROTOCOL") || upper.contains("PROTOCOL_VERSION") {
            return ("TLS handshake failed: the peer does not offer TLS 1.3", false)
        }
        if upper.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || upper.contains("CERTIFICATE_REQUIRED") {
            return client
                ? ("TLS handshake failed: the server requires a mediator certificate (--tls-cert and --tls-key)", true)
                : ("TLS handshake failed: the mediator presented no certificate, and --mediator-ca requires one", true)
        }
        if upper.contains("FAILEDTOVALIDATEHOSTNAME") {
            return ("TLS handshake failed: the server's certificate does not name the host dialled (\(text))", true)
        }
        if upper.contains("CERTIFICATE_VERIFY_FAILED") {
            return client
                ? ("TLS handshake failed: the server's certificate does not chain to the trusted CA (--ca-file)", true)
                : ("TLS handshake failed: the mediator's certificate does not chain to --mediator-ca", true)
        }
        if upper.contains("TLSV1_ALERT_UNKNOWN_CA") || upper.contains("SSLV3_ALERT_BAD_CERTIFICATE")
            || upper.contains("CERTIFICATE_UNKNOWN")
        {
            return client
                ? (
                    "TLS handshake failed: the server refused this mediator's certificate (check --tls-cert against its --mediator-ca)",
                    true
                )
                : ("TLS handshake failed: the mediator refused this server's certificate", true)
        }
        if upper.contains("EOF DURING HANDSHAKE") {
            return ("the peer closed the connection during the TLS handshake", false)
        }
        if upper.contains("UNCLEANSHUTDOWN") {
            return ("the peer closed the tunnel without a TLS close_notify", false)
        }
        return ("TLS error: \(text)", false)
    }
}

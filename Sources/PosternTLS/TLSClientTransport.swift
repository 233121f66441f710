import Logging
import NIOCore
import NIOSSL
import NIOTLS
import PosternCore
import PosternTunnel
import X509

/// TLS 1.3 at the mediator's end, with one way to trust the server (see `ServerTrust`).
public final class TLSClientTransport: ClientTransport, @unchecked Sendable {
    public enum TrustSource: Sendable {
        /// `--server-fingerprint`: exactly this key.
        case fingerprint(KeyFingerprint)
        /// Trust on first use, recorded in this known-servers file.
        case knownServers(KnownServersFile)
        /// `--ca-file`: a chain to these roots that names the server (DNS name or IP address).
        case certificateAuthority(file: String)
    }

    private let trustSource: TrustSource
    private let context: NIOSSLContext
    private let logger: Logger

    /// `clientCertificate`: a certificate and key for servers that require one (`--tls-cert`, `--tls-key`).
    public init(trust: TrustSource, clientCertificate: (certificateFile: String, keyFile: String)? = nil, logger: Logger) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.shutdownTimeout = .seconds(1)
        if case .certificateAuthority(let file) = trust {
            configuration.trustRoots = .certificates(try caRoots(file, what: "CA file"))
            configuration.certificateVerification = .fullVerification
        } else {
            // Pinning replaces chain and name checks (a self-signed key is the common case): the
            // verification callback below compares the key and nothing else.
            configuration.certificateVerification = .noHostnameVerification
        }
        if let client = clientCertificate {
            let identity = try ServerIdentity.load(certificateFile: client.certificateFile, keyFile: client.keyFile)
            configuration.certificateChain = identity.certificateChain.map { .certificate($0) }
            configuration.privateKey = .privateKey(identity.privateKey)
        }
        self.trustSource = trust
        self.context = try NIOSSLContext(configuration: configuration)
        self.logger = logger
    }

    public var name: String {
        switch trustSource {
        case .fingerprint(let f): return "TLS 1.3, server key pinned to \(f)"
        case .knownServers(let file): return "TLS 1.3, server key pinned on first use in \(file.path)"
        case .certificateAuthority(let file): return "TLS 1.3, server certificate checked against \(file)"
        }
    }

    public func clientConnection(serverHost: String, serverPort: Int) throws -> TransportConnection {
        let server = Self.serverKey(host: serverHost, port: serverPort)
        let trust: ServerTrust
        switch trustSource {
        case .fingerprint(let f):
            trust = .pinned(f, source: "--server-fingerprint")
        case .knownServers(let file):
            if let f = file.fingerprint(for: server) {
                trust = .pinned(f, source: "\(file.path) (recorded on first use)")
            } else {
                trust = .firstUse
            }
        case .certificateAuthority:
            trust = .certificateAuthority
        }
        let check = PinCheck(server: server, trust: trust)
        let isIP = (try? SocketAddress(ipAddress: serverHost, port: 0)) != nil
        let handler: NIOSSLClientHandler
        if case .certificateAuthority = trust {
            // Standard verification: chain to the roots, and the certificate names the host (an IP
            // address is checked against the certificate's IP entries; it never goes in SNI).
            handler = try NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : serverHost)
        } else {
            handler = try NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : serverHost) { certificates, promise in
                promise.succeed(check.verify(certificates))
            }
        }
        let events = TLSEvents(client: check)
        let connection = TransportConnection(handlers: [handler, events])
        events.connection = connection
        if case .knownServers(let file) = trustSource, case .firstUse = trust {
            let logger = logger
            connection.authenticated = {
                guard let fingerprint = check.presented else { return }
                do {
                    try file.record(fingerprint, for: server)
                    logger.warning(
                        "first connection to \(server): trusting its TLS key \(fingerprint) and recording it in \(file.path); a different key will be refused from now on"
                    )
                } catch {
                    logger.error(
                        "cannot record the server's key in \(file.path): \(error); the next connection is checked against what the file holds then"
                    )
                }
            }
        }
        return connection
    }

    /// The known-servers key: HOST:PORT, IPv6 in brackets.
    static func serverKey(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

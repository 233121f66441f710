import Logging
import NIOCore
import NIOSSL
import NIOTLS
import PosternCore
import PosternTunnel
import X509

/// TLS 1.3 at the server's end: its own key (self-signed or from a CA), optionally requiring mediators
/// to present a certificate from `mediatorCA` (mutual TLS).
public struct TLSServerTransport: ServerTransport {
    public let identity: ServerIdentity
    public let requiresClientCertificates: Bool
    private let context: NIOSSLContext

    public init(identity: ServerIdentity, mediatorCAFile: String? = nil) throws {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: identity.certificateChain.map { .certificate($0) }, privateKey: .privateKey(identity.privateKey))
        configuration.minimumTLSVersion = .tlsv13
        // A tunnel is closed mostly because its path died: waiting long for the peer's close_notify
        // would only keep a dead socket around.
        configuration.shutdownTimeout = .seconds(1)
        if let file = mediatorCAFile {
            configuration.certificateVerification = .noHostnameVerification
            configuration.trustRoots = .certificates(try caRoots(file, what: "mediator CA file"))
            configuration.sendCANameList = true
        }
        self.identity = identity
        self.requiresClientCertificates = mediatorCAFile != nil
        self.context = try NIOSSLContext(configuration: configuration)
    }

    public var name: String {
        "TLS 1.3, key \(identity.fingerprint)" + (requiresClientCertificates ? ", mediator certificates required" : "")
    }

    public func serverConnection() throws -> TransportConnection {
        let events = TLSEvents(server: (identity.fingerprint, requiresClientCertificates))
        let connection = TransportConnection(handlers: [NIOSSLServerHandler(context: context), events])
        events.connection = connection
        return connection
    }
}

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
                    logger.error("cannot record the server's key in \(file.path): \(error); it will be trusted again on next use")
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

/// The certificates of a CA file (PEM), at least one.
private func caRoots(_ file: String, what: String) throws -> [NIOSSLCertificate] {
    let roots: [NIOSSLCertificate]
    do {
        roots = try NIOSSLCertificate.fromPEMFile(file)
    } catch {
        throw TransportError("cannot read the \(what) \(file): \(TLSErrorText.describe(error))")
    }
    guard !roots.isEmpty else { throw TransportError("the \(what) \(file) holds no certificate") }
    return roots
}

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

/// Sits above the TLS handler: turns TLS failures into sentences and, once the handshake is done,
/// tells the session what it learned (`TransportReadyEvent`): the server key (channel binding) and,
/// with mutual TLS, the names of the mediator's certificate.
final class TLSEvents: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let client: PinCheck?
    /// Server end: its own key, and whether mediators must present a certificate.
    private let server: (key: KeyFingerprint, requiresClientCertificate: Bool)?
    weak var connection: TransportConnection?

    init(client: PinCheck) {
        self.client = client
        self.server = nil
    }

    init(server: (key: KeyFingerprint, requiresClientCertificate: Bool)) {
        self.client = nil
        self.server = server
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case TLSUserEvent.handshakeCompleted = event else {
            return context.fireUserInboundEventTriggered(event)
        }
        let facts: TransportFacts
        if let client {
            let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate
            client.handshakeCompleted(peer: peer)
            facts = TransportFacts(channelBinding: client.presented?.bytes ?? [])
        } else {
            // Mutual TLS: the certificate was verified against --mediator-ca; the session machine
            // checks that it names the mediator.
            let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
            facts = TransportFacts(
                channelBinding: server?.key.bytes ?? [], peerCertificateNames: peer.map { CertificateNames.of($0) },
                requiresClientCertificate: server?.requiresClientCertificate ?? false)
        }
        connection?.facts = facts
        context.fireUserInboundEventTriggered(event)
        context.fireUserInboundEventTriggered(TransportReadyEvent(facts: facts))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let refusal = client?.refusal {
            context.fireErrorCaught(TransportError(refusal, fatal: true))
        } else if TLSErrorText.isTLSError(error) {
            // At the mediator, a certificate refused either way will be refused again: stop, loudly.
            let (text, trust) = TLSErrorText.classify(error, client: client != nil)
            context.fireErrorCaught(TransportError(text, fatal: trust && client != nil))
        } else {
            context.fireErrorCaught(error)
        }
    }
}

/// The names a certificate is for: its subject's common names and its DNS subject alternative names.
enum CertificateNames {
    static func of(_ certificate: NIOSSLCertificate) -> [String] {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return [] }
        var names: [String] = []
        for rdn in parsed.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                // RFC 4514 text ("CN=acme"); mediator names need no escaping.
                let text = "\(attribute)"
                if let eq = text.firstIndex(of: "=") { names.append(String(text[text.index(after: eq)...])) }
            }
        }
        if let alternatives = try? parsed.extensions.subjectAlternativeNames {
            for case .dnsName(let name) in alternatives { names.append(name) }
        }
        return names
    }
}

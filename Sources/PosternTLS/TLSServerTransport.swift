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

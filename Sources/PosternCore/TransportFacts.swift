/// What the transport under a session knows once it can carry frames: given to the session machine as
/// one input (`SessionStateMachine.transportReady`), so every decision that depends on it — the proofs'
/// channel binding, the mutual-TLS name check — is made in the machine (docs/protocol.md §4.2).
public struct TransportFacts: Hashable, Sendable {
    /// The server's TLS key fingerprint as this end saw it: the server's own key at the server, the key
    /// the handshake presented at the mediator; empty on plain TCP (`--insecure`).
    public var channelBinding: [UInt8]
    /// Server end with mutual TLS: the names the mediator's certificate carries (subject CN and DNS
    /// subject alternative names); nil when the mediator presented no certificate.
    public var peerCertificateNames: [String]?
    /// Server end: mediators must present a certificate (`--mediator-ca`).
    public var requiresClientCertificate: Bool

    public init(channelBinding: [UInt8] = [], peerCertificateNames: [String]? = nil, requiresClientCertificate: Bool = false) {
        self.channelBinding = channelBinding
        self.peerCertificateNames = peerCertificateNames
        self.requiresClientCertificate = requiresClientCertificate
    }

    /// Plain TCP: nothing bound, nothing certified.
    public static let plain = TransportFacts()
}

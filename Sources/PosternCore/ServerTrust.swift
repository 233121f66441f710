/// What the mediator trusts as the server's TLS key, decided before the handshake.
public enum ServerTrust: Sendable, Equatable {
    /// `--server-fingerprint`, or the known-servers record: only this key.
    case pinned(KeyFingerprint, source: String)
    /// A first connection to a server with no record: trust on first use, record after authentication.
    case firstUse
    /// `--ca-file`: a certificate chain to the CA naming the server's host (checked by TLS itself).
    case certificateAuthority

    /// Whether a server key presented in the handshake is acceptable (CA trust is checked by TLS itself).
    public func accepts(_ presented: KeyFingerprint) -> Bool {
        switch self {
        case .pinned(let pin, _): return pin == presented
        case .firstUse, .certificateAuthority: return true
        }
    }
}

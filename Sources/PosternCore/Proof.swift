import Crypto

/// The challenge-response of docs/protocol.md §4.2: each side proves it knows the mediator's secret
/// without sending it, bound to both nonces and the name so a proof cannot be replayed or reflected,
/// and to the server's TLS key as the mediator saw it (channel binding): a TLS interceptor with any
/// other key breaks both proofs, even for a mediator that has not pinned the key yet.
public enum Proof {
    public enum Role: String, Sendable {
        case mediator = "postern-v1 mediator proof"
        case server = "postern-v1 server proof"
    }

    /// HMAC-SHA256(key: secret, role label | 0x00 | server nonce | mediator nonce | binding | name).
    /// `binding` is the 32-byte server key fingerprint on TLS, empty on plain TCP (`--insecure`).
    public static func compute(
        role: Role, secret: [UInt8], serverNonce: [UInt8], mediatorNonce: [UInt8], binding: [UInt8] = [], name: String
    ) -> [UInt8] {
        var message = Array(role.rawValue.utf8)
        message.append(0)
        message += serverNonce
        message += mediatorNonce
        message += binding
        message += Array(name.utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret))
        return Array(mac)
    }

    /// Compares in time independent of where the first difference is.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

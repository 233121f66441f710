import Crypto

/// The keys a session derives for channels beside the tunnel's TCP connection (the UDP channel, coming),
/// docs/protocol.md §4.5. Both ends hold the same two keys, each using one to send and the other to
/// receive. Never logged: `description` and `dump` show no key bytes.
public struct SessionKeys: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// One label per direction, so a packet sealed by one end can never be replayed at it by the other.
    public enum Label: String, Sendable, CaseIterable {
        case serverToMediator = "postern-v1 server to mediator key"
        case mediatorToServer = "postern-v1 mediator to server key"
    }

    /// The key of what this end sends.
    public let sending: [UInt8]
    /// The key of what this end receives.
    public let receiving: [UInt8]

    public init(sending: [UInt8], receiving: [UInt8]) {
        self.sending = sending
        self.receiving = receiving
    }

    /// Bytes per key.
    public static let length = 32

    /// HKDF-SHA256 (RFC 5869) with the secret as input key material, both nonces as salt, and as info
    /// the label, a zero byte, the session id (8 bytes big-endian), the channel binding and the name.
    /// The same inputs as the proofs (§4.2) plus the session id: keys differ per session and per path,
    /// and a TLS interceptor (another binding) cannot make both ends agree on them.
    public static func derive(
        _ label: Label, secret: [UInt8], serverNonce: [UInt8], mediatorNonce: [UInt8], binding: [UInt8], sessionID: UInt64,
        name: String
    ) -> [UInt8] {
        var info = Array(label.rawValue.utf8)
        info.append(0)
        for shift in stride(from: 56, through: 0, by: -8) { info.append(UInt8(truncatingIfNeeded: sessionID >> UInt64(shift))) }
        info += binding
        info += Array(name.utf8)
        let key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: secret), salt: serverNonce + mediatorNonce, info: info, outputByteCount: length)
        return key.withUnsafeBytes { Array($0) }
    }

    /// The keys of one end: the server sends with the server-to-mediator key, the mediator with the other.
    public init(
        role: Proof.Role, secret: [UInt8], serverNonce: [UInt8], mediatorNonce: [UInt8], binding: [UInt8], sessionID: UInt64,
        name: String
    ) {
        func key(_ label: Label) -> [UInt8] {
            SessionKeys.derive(
                label, secret: secret, serverNonce: serverNonce, mediatorNonce: mediatorNonce, binding: binding, sessionID: sessionID,
                name: name)
        }
        let toMediator = key(.serverToMediator)
        let toServer = key(.mediatorToServer)
        switch role {
        case .server: self.init(sending: toMediator, receiving: toServer)
        case .mediator: self.init(sending: toServer, receiving: toMediator)
        }
    }

    public var description: String { "SessionKeys(redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

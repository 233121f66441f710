import Crypto
import NIOCore
import PosternWire

/// Seals and opens the UDP channel datagrams of one session (docs/protocol.md §9.4): ChaCha20-Poly1305
/// (RFC 8439) under the session's keys of §4.5, one per direction, with the 96-bit nonce built from the
/// header's channel id and counter and the whole 20-byte header as associated data.
///
/// ChaCha20-Poly1305 rather than AES-GCM: it is constant-time in software on every CPU, and a mediator
/// may run on a small router without AES instructions, where AES-GCM is both slow and exposed to
/// cache-timing attacks; with AES-NI, AES-GCM would be faster, but neither limits a channel bound by a
/// home uplink. It is also what WireGuard uses for the same job.
///
/// Pure and stateless: the counter comes from the caller (`UDPChannelStateMachine`), which never passes
/// the same one twice for a channel (`UDPChannelCounter`).
public struct UDPChannelCipher: Sendable {
    public let sessionID: UInt64
    // Kept as bytes: swift-crypto's SymmetricKey is not Sendable; making one per datagram copies 32 bytes.
    private let keys: SessionKeys

    public init(keys: SessionKeys, sessionID: UInt64) {
        self.sessionID = sessionID
        self.keys = keys
    }

    /// One whole datagram: header, the message sealed under this end's sending key, tag. Returns nil
    /// only when it would exceed `UDPChannelHeader.maxDatagramSize` (the caller counts an oversize drop).
    public func seal(_ message: UDPChannelMessage, channelID: UInt16, counter: UInt64) -> ByteBuffer? {
        let size = UDPChannelHeader.overhead + message.encodedLength
        guard size <= UDPChannelHeader.maxDatagramSize else { return nil }
        let header = UDPChannelHeader(channelID: channelID, sessionID: sessionID, counter: counter)
        var datagram = ByteBuffer()
        datagram.reserveCapacity(size)
        datagram.writeUDPChannelHeader(header)
        var plain = ByteBuffer()
        plain.reserveCapacity(message.encodedLength)
        plain.writeUDPChannelMessage(message)
        let plaintext = plain.readableBytesView
        let associated = datagram.readableBytesView
        // Neither can fail: the key is 32 bytes and the nonce 12, the sizes ChaChaPoly takes.
        guard let nonce = try? ChaChaPoly.Nonce(data: header.nonce),
            let box = try? ChaChaPoly.seal(
                Array(plaintext), using: SymmetricKey(data: keys.sending), nonce: nonce, authenticating: Array(associated))
        else { preconditionFailure("ChaChaPoly refused a 32-byte key and a 12-byte nonce") }
        datagram.writeBytes(box.ciphertext)
        datagram.writeBytes(box.tag)
        return datagram
    }

    /// The plaintext of a received datagram whose header was read (`readUDPChannelHeader`) from the
    /// front of `datagram` (the whole datagram, from its first byte), or nil when it does not
    /// authenticate under this end's receiving key: forged, altered, sealed for the other direction or
    /// another session.
    public func open(_ datagram: ByteBuffer, header: UDPChannelHeader) -> ByteBuffer? {
        let start = datagram.readerIndex
        let sealedLength = datagram.readableBytes - UDPChannelHeader.overhead
        guard sealedLength >= 0,
            let associated = datagram.getBytes(at: start, length: UDPChannelHeader.length),
            let ciphertext = datagram.getBytes(at: start + UDPChannelHeader.length, length: sealedLength),
            let tag = datagram.getBytes(at: start + UDPChannelHeader.length + sealedLength, length: UDPChannelHeader.tagLength),
            let nonce = try? ChaChaPoly.Nonce(data: header.nonce),
            let box = try? ChaChaPoly.SealedBox(nonce: nonce, ciphertext: ciphertext, tag: tag),
            let plaintext = try? ChaChaPoly.open(box, using: SymmetricKey(data: keys.receiving), authenticating: associated)
        else { return nil }
        var buffer = ByteBuffer()
        buffer.writeBytes(plaintext)
        return buffer
    }
}

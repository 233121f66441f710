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
///
/// Copies: swift-crypto has no in-place AEAD, and always returns a new ciphertext (or plaintext) and
/// copies it once more into its sealed box. Around that, nothing more is copied: the message is
/// encoded straight after the header in the datagram's own buffer, sealed from there (header and
/// plaintext passed as pointers into that buffer, not as arrays), and the ciphertext written over
/// it; opening reads header, ciphertext and tag in place in the received buffer.
public struct UDPChannelCipher: Sendable {
    public let sessionID: UInt64
    private let keys: Keys

    /// The two keys, made once per session instead of once per datagram. swift-crypto's SymmetricKey
    /// is not marked Sendable, but it is immutable storage that is only read after it is made.
    private final class Keys: @unchecked Sendable {
        let sending: SymmetricKey
        let receiving: SymmetricKey

        init(_ keys: SessionKeys) {
            sending = SymmetricKey(data: keys.sending)
            receiving = SymmetricKey(data: keys.receiving)
        }
    }

    public init(keys: SessionKeys, sessionID: UInt64) {
        self.sessionID = sessionID
        self.keys = Keys(keys)
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
        let plaintextLength = datagram.writeUDPChannelMessage(message)
        // Neither can fail: the key is 32 bytes and the nonce 12, the sizes ChaChaPoly takes.
        guard let nonce = try? ChaChaPoly.Nonce(data: header.nonce),
            let box = try? datagram.withUnsafeReadableBytes({ raw in
                try ChaChaPoly.seal(
                    UnsafeRawBufferPointer(rebasing: raw[UDPChannelHeader.length...]), using: keys.sending, nonce: nonce,
                    authenticating: UnsafeRawBufferPointer(rebasing: raw[..<UDPChannelHeader.length]))
            })
        else { preconditionFailure("ChaChaPoly refused a 32-byte key and a 12-byte nonce") }
        // The sealed box's one buffer is nonce, ciphertext, tag: ciphertext and tag replace the
        // plaintext in one copy, without the two Data slices `ciphertext` and `tag` would make.
        let combined = box.combined
        precondition(combined.count == 12 + plaintextLength + 16, "ChaCha20 changed the message's length")
        datagram.moveWriterIndex(to: datagram.readerIndex + UDPChannelHeader.length)
        _ = combined.withUnsafeBytes { datagram.writeBytes(UnsafeRawBufferPointer(rebasing: $0[12...])) }
        return datagram
    }

    /// The plaintext of a received datagram whose header was read (`readUDPChannelHeader`) from the
    /// front of `datagram` (the whole datagram, from its first byte), or nil when it does not
    /// authenticate under this end's receiving key: forged, altered, sealed for the other direction or
    /// another session. The plaintext is in a buffer of its own: a received datagram may be a slice of
    /// a whole batch's receive buffer, which must not stay alive with what is delivered.
    public func open(_ datagram: ByteBuffer, header: UDPChannelHeader) -> ByteBuffer? {
        let sealedLength = datagram.readableBytes - UDPChannelHeader.overhead
        guard sealedLength >= 0, let nonce = try? ChaChaPoly.Nonce(data: header.nonce) else { return nil }
        return datagram.withUnsafeReadableBytes { raw -> ByteBuffer? in
            let header = UnsafeRawBufferPointer(rebasing: raw[..<UDPChannelHeader.length])
            let ciphertext = UnsafeRawBufferPointer(rebasing: raw[UDPChannelHeader.length..<(UDPChannelHeader.length + sealedLength)])
            let tag = UnsafeRawBufferPointer(rebasing: raw[(UDPChannelHeader.length + sealedLength)...])
            guard let box = try? ChaChaPoly.SealedBox(nonce: nonce, ciphertext: ciphertext, tag: tag),
                let plaintext = try? ChaChaPoly.open(box, using: keys.receiving, authenticating: header)
            else { return nil }
            var buffer = ByteBuffer()
            buffer.reserveCapacity(plaintext.count)
            buffer.writeBytes(plaintext)
            return buffer
        }
    }
}

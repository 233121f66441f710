// swift-crypto's own BoringSSL (the library `Crypto` is built on, linked once into the program):
// its AEAD takes a key context made once and seals and opens in place, which `ChaChaPoly` does not.
import CCryptoBoringSSL
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
/// Copies and allocations, per datagram (TUN mode seals and opens one per packet): none but the
/// datagram's own buffer. The AEAD is BoringSSL's `EVP_AEAD` — the implementation swift-crypto's
/// `ChaChaPoly` wraps — called directly, because `ChaChaPoly` makes a key context, two output
/// buffers, two `Data` and a sealed box for every call (a third of TUN mode's CPU time in a profile
/// of the UDP channel): the key contexts are made once per session, the message is encoded straight
/// after the header in the datagram's buffer and sealed in place there, the tag written behind it;
/// opening decrypts from the received bytes straight into the plaintext's buffer.
public struct UDPChannelCipher: Sendable {
    public let sessionID: UInt64
    private let keys: Keys

    /// The two key contexts (`EVP_AEAD_CTX`), made once per session. BoringSSL only reads a context
    /// after it is made, so one may seal or open on any thread.
    private final class Keys: @unchecked Sendable {
        let sending: UnsafeMutablePointer<EVP_AEAD_CTX>
        let receiving: UnsafeMutablePointer<EVP_AEAD_CTX>

        init(_ keys: SessionKeys) {
            sending = Self.context(keys.sending)
            receiving = Self.context(keys.receiving)
        }

        deinit {
            CCryptoBoringSSL_EVP_AEAD_CTX_free(sending)
            CCryptoBoringSSL_EVP_AEAD_CTX_free(receiving)
        }

        private static func context(_ key: [UInt8]) -> UnsafeMutablePointer<EVP_AEAD_CTX> {
            precondition(key.count == SessionKeys.length, "a session key is 32 bytes")
            let made = key.withUnsafeBufferPointer {
                CCryptoBoringSSL_EVP_AEAD_CTX_new(
                    CCryptoBoringSSL_EVP_aead_chacha20_poly1305(), $0.baseAddress, $0.count, UDPChannelHeader.tagLength)
            }
            guard let made else { preconditionFailure("BoringSSL refused a 32-byte ChaCha20-Poly1305 key") }
            return made
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
        var datagram = ByteBufferAllocator().buffer(capacity: size)
        datagram.writeUDPChannelHeader(UDPChannelHeader(channelID: channelID, sessionID: sessionID, counter: counter))
        datagram.writeUDPChannelMessage(message)
        sealInPlace(&datagram, channelID: channelID, counter: counter)
        return datagram
    }

    /// Seals what `datagram` holds from its reader index: the 20-byte header, then the message; the
    /// message becomes its ciphertext where it is, and the tag is written after it.
    private func sealInPlace(_ datagram: inout ByteBuffer, channelID: UInt16, counter: UInt64) {
        let plaintextLength = datagram.readableBytes - UDPChannelHeader.length
        datagram.writeRepeatingByte(0, count: UDPChannelHeader.tagLength)
        let ok = Self.withNonce(channelID: channelID, counter: counter) { nonce in
            datagram.withUnsafeMutableReadableBytes { raw -> Bool in
                let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                let message = base + UDPChannelHeader.length
                var written = 0
                // In place: BoringSSL allows `out` and `in` to be the same bytes.
                return CCryptoBoringSSL_EVP_AEAD_CTX_seal(
                    keys.sending, message, &written, plaintextLength + UDPChannelHeader.tagLength, nonce,
                    UDPChannelHeader.nonceLength, message, plaintextLength, base, UDPChannelHeader.length) == 1
                    && written == plaintextLength + UDPChannelHeader.tagLength
            }
        }
        precondition(ok, "ChaCha20-Poly1305 refused to seal")
    }

    /// The plaintext of a received datagram whose header was read (`readUDPChannelHeader`) from the
    /// front of `datagram` (the whole datagram, from its first byte), or nil when it does not
    /// authenticate under this end's receiving key: forged, altered, sealed for the other direction or
    /// another session. The plaintext is in a buffer of its own: a received datagram may be a slice of
    /// a whole batch's receive buffer, which must not stay alive with what is delivered.
    public func open(_ datagram: ByteBuffer, header: UDPChannelHeader) -> ByteBuffer? {
        let sealedLength = datagram.readableBytes - UDPChannelHeader.length
        guard sealedLength >= UDPChannelHeader.tagLength else { return nil }
        let plaintextLength = sealedLength - UDPChannelHeader.tagLength
        var plaintext = ByteBufferAllocator().buffer(capacity: plaintextLength)
        let ok = Self.withNonce(channelID: header.channelID, counter: header.counter) { nonce in
            datagram.withUnsafeReadableBytes { raw -> Bool in
                let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                var opened = false
                plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: plaintextLength) { out -> Int in
                    var written = 0
                    opened =
                        CCryptoBoringSSL_EVP_AEAD_CTX_open(
                            keys.receiving, out.baseAddress!.assumingMemoryBound(to: UInt8.self), &written, plaintextLength, nonce,
                            UDPChannelHeader.nonceLength, base + UDPChannelHeader.length, sealedLength, base, UDPChannelHeader.length)
                        == 1 && written == plaintextLength
                    return opened ? plaintextLength : 0
                }
                return opened
            }
        }
        return ok ? plaintext : nil
    }

    /// The 96-bit nonce of §9.4 (two zero bytes, the channel id, the counter, big-endian) on the stack.
    @inline(__always)
    private static func withNonce<R>(channelID: UInt16, counter: UInt64, _ body: (UnsafePointer<UInt8>) -> R) -> R {
        var nonce: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &nonce) { raw in
            raw.storeBytes(of: UInt32(channelID).bigEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: counter.bigEndian, toByteOffset: 4, as: UInt64.self)
            return body(raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
    }
}

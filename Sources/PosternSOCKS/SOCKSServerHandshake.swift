import NIOCore
import PosternWire

/// The server side of a SOCKS5 handshake (RFC 1928 §3-4, RFC 1929): greeting, method selection,
/// username/password when required, then one request. Pure: it takes the bytes the client sent and
/// says what to write and what to do next; checking a password is a function it is given, and time
/// (the handshake timeout) is the caller's.
///
/// Everything malformed ends the connection: with the reply the RFCs define where there is one
/// (no acceptable method, failed authentication, unknown command, unknown address type), else with
/// a plain close. A complete message is at most 515 bytes, so nothing is buffered beyond that.
///
/// Written here rather than taken from swift-nio-extras' NIOSOCKS: its server handler goes
/// "established" after the first successful reply, so BIND's second reply cannot be sent; an
/// unknown address type fails the channel, so reply 8 cannot be sent; it passes RFC 1929 bytes
/// through unparsed; and it has no UDP header.
public struct SOCKSServerHandshake {
    /// The method a listener requires (RFC 1928 §3).
    public enum Method: UInt8, Hashable, Sendable {
        case noAuthentication = 0
        case usernamePassword = 2
    }

    /// What the caller does after `received`.
    public struct Step: Hashable, Sendable {
        /// Bytes to write to the client first (a method selection, an authentication status, an
        /// error reply), or nil.
        public var reply: ByteBuffer?
        public var next: Next
    }

    public enum Next: Hashable, Sendable {
        /// Read more; the handshake is not over.
        case readMore
        /// The request is complete: carry it out and answer with `reply(_:bound:)`. Bytes the client
        /// sent after it are in `leftover`.
        case request(SOCKSRequest)
        /// Close once `reply` is written. `reason` is for the log.
        case close(reason: String)
    }

    private enum State {
        case greeting
        case authenticating
        case request
        case done
    }

    private let method: Method
    /// Given the username and password, the mediator they may use, or nil.
    private let authenticate: ([UInt8], [UInt8]) -> String?
    private var state = State.greeting
    private var buffer: ByteBuffer
    /// The username the client authenticated with (nil without authentication).
    public private(set) var username: String?
    /// The mediator its requests go to: the listener's, or the one the username chose.
    public private(set) var mediator: String
    /// Whether the handshake ended on credentials that were refused (rather than on malformed
    /// input): the log names every refused login, and counts the rest.
    public private(set) var refusedCredentials = false

    public init(method: Method, mediator: String, authenticate: @escaping ([UInt8], [UInt8]) -> String?) {
        self.method = method
        self.mediator = mediator
        self.authenticate = authenticate
        self.buffer = ByteBuffer()
    }

    /// What came after the request (a client that did not wait for the reply), to relay.
    public var leftover: ByteBuffer { buffer }

    public var isDone: Bool { state == .done }

    public mutating func received(_ bytes: ByteBuffer) -> Step {
        var bytes = bytes
        buffer.writeBuffer(&bytes)
        var replies = ByteBuffer()
        while true {
            let step = advance()
            if var r = step.reply { replies.writeBuffer(&r) }
            switch step.next {
            case .readMore where step.reply != nil && state != .done:
                continue  // the next message may already be here
            default:
                return Step(reply: replies.readableBytes > 0 ? replies : nil, next: step.next)
            }
        }
    }

    private mutating func advance() -> Step {
        switch state {
        case .greeting: return greeting()
        case .authenticating: return credentials()
        case .request: return request()
        case .done: return Step(reply: nil, next: .close(reason: "handshake already over"))
        }
    }

    /// VER 5 | NMETHODS | METHODS (NMETHODS bytes).
    private mutating func greeting() -> Step {
        guard let version = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return .init(reply: nil, next: .readMore) }
        guard version == 5 else { return fail(nil, "not SOCKS5 (version \(version))") }
        guard let count = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self),
            let methods = buffer.getBytes(at: buffer.readerIndex + 2, length: Int(count))
        else { return .init(reply: nil, next: .readMore) }
        buffer.moveReaderIndex(forwardBy: 2 + Int(count))
        guard methods.contains(method.rawValue) else {
            return fail(Self.bytes([5, 0xff]), "no acceptable method (offered \(methods), required \(method.rawValue))")
        }
        state = method == .noAuthentication ? .request : .authenticating
        return .init(reply: Self.bytes([5, method.rawValue]), next: .readMore)
    }

    /// RFC 1929: VER 1 | ULEN | UNAME | PLEN | PASSWD. Answered VER 1 | STATUS (0 = success).
    private mutating func credentials() -> Step {
        let start = buffer.readerIndex
        guard let version = buffer.getInteger(at: start, as: UInt8.self) else { return .init(reply: nil, next: .readMore) }
        guard version == 1 else { return fail(Self.bytes([1, 1]), "username/password version \(version)") }
        guard let ulen = buffer.getInteger(at: start + 1, as: UInt8.self),
            let user = buffer.getBytes(at: start + 2, length: Int(ulen)),
            let plen = buffer.getInteger(at: start + 2 + Int(ulen), as: UInt8.self),
            let password = buffer.getBytes(at: start + 3 + Int(ulen), length: Int(plen))
        else { return .init(reply: nil, next: .readMore) }
        buffer.moveReaderIndex(forwardBy: 3 + Int(ulen) + Int(plen))
        let shown = PeerText.sanitized(String(decoding: user, as: UTF8.self))
        guard ulen > 0, plen > 0, let chosen = authenticate(user, password) else {
            refusedCredentials = true
            return fail(Self.bytes([1, 1]), "authentication failed for user '\(shown)'")
        }
        username = shown
        mediator = chosen
        state = .request
        return .init(reply: Self.bytes([1, 0]), next: .readMore)
    }

    /// VER 5 | CMD | RSV 0 | ATYP | DST.ADDR | DST.PORT.
    private mutating func request() -> Step {
        let start = buffer.readerIndex
        guard let version = buffer.getInteger(at: start, as: UInt8.self) else { return .init(reply: nil, next: .readMore) }
        guard version == 5 else { return fail(nil, "request of version \(version)") }
        guard let cmd = buffer.getInteger(at: start + 1, as: UInt8.self) else { return .init(reply: nil, next: .readMore) }
        guard let command = SOCKSCommand(rawValue: cmd) else {
            return fail(Self.reply(.commandNotSupported), "command \(cmd) not supported")
        }
        guard let reserved = buffer.getInteger(at: start + 2, as: UInt8.self) else { return .init(reply: nil, next: .readMore) }
        guard reserved == 0 else { return fail(Self.reply(.generalFailure), "reserved byte \(reserved) in a request") }
        var rest = buffer.getSlice(at: start + 3, length: buffer.writerIndex - start - 3) ?? ByteBuffer()
        let destination: Endpoint?
        do {
            destination = try rest.readSOCKSAddress()
        } catch .unsupportedType(let t) {
            return fail(Self.reply(.addressTypeNotSupported), "address type \(t) not supported")
        } catch {
            return fail(Self.reply(.generalFailure), "unusable domain name")
        }
        guard let destination else { return .init(reply: nil, next: .readMore) }
        buffer = rest
        state = .done
        return .init(reply: nil, next: .request(SOCKSRequest(command: command, destination: destination)))
    }

    private mutating func fail(_ reply: ByteBuffer?, _ reason: String) -> Step {
        state = .done
        buffer.clear()
        return .init(reply: reply, next: .close(reason: reason))
    }

    /// A reply (RFC 1928 §6): VER 5 | REP | RSV 0 | ATYP | BND.ADDR | BND.PORT. Failures carry
    /// 0.0.0.0:0.
    public static func reply(_ code: SOCKSReply, bound: Endpoint = Endpoint(.anyV4, 0)) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeBytes([5, code.rawValue, 0])
        b.writeSOCKSAddress(bound)
        return b
    }

    private static func bytes(_ b: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: b) }
}

import NIOCore
import NIOPosix
import PosternCore
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// Relays one TCP socket through one port of the tunnel, at either end (docs/protocol.md §6):
/// socket bytes become DATA within the peer's window; DATA becomes socket writes, granted back with
/// WINDOW once written; EOF becomes FINISHED and FINISHED a write shutdown (half-close); a socket
/// error becomes RESET and RESET an abortive close (RST).
///
/// It may exist before its socket does (a connection accepted on the mediator is announced before
/// the server's own connect finishes): DATA, FINISHED and RESET that arrive first are kept, bounded
/// by the window we granted, and replayed once the handler joins its channel.
public final class StreamRelay: ChannelInboundHandler, TunnelPort {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public let portID: UInt32
    private let session: TunnelSession
    private var sendWindow: SendWindow
    private var receiveWindow: ReceiveWindow
    private var state = StreamState()
    private var context: ChannelHandlerContext?
    /// Read from the socket but not yet sent: no window or the tunnel is full.
    private var held: ByteBuffer?
    /// EOF seen while data was still held: FINISHED goes after it.
    private var eofPending = false
    /// Tunnel frames that came before the socket was ready.
    private var early: [Frame] = []
    private var earlyBytes = 0
    private var done = false
    /// The socket ended by EOF after our output was shut, while some of its bytes were still held:
    /// the port lives on (without a socket) until they are sent, then FINISHED follows.
    private var drainingAfterClose = false
    /// Told once when the port is gone, with how it ended (for events and counters).
    public var onClose: ((StreamRelay, _ how: String) -> Void)?
    public private(set) var bytesToTunnel: UInt64 = 0
    public private(set) var bytesFromTunnel: UInt64 = 0

    public init(portID: UInt32, session: TunnelSession) {
        self.portID = portID
        self.session = session
        self.sendWindow = SendWindow(initial: session.established?.peerInitialWindow ?? session.settings.initialWindow)
        self.receiveWindow = ReceiveWindow(size: session.settings.initialWindow)
    }

    // MARK: - Socket side

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let pending = early
        early = []
        // Replayed DATA takes its share of the session budget again as it is written.
        session.releaseBuffer(earlyBytes)
        earlyBytes = 0
        for frame in pending { tunnelReceived(frame) }
        if !done { readIfAllowed() }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        // One read() may deliver several buffers (NIO's maxMessagesPerRead): once one of them is
        // held (no window, or tunnel not writable), the rest must queue behind it, never replace it.
        if held != nil {
            held!.writeBuffer(&buffer)
            return
        }
        forward(buffer)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        readIfAllowed()
        context.fireChannelReadComplete()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            if held != nil { eofPending = true } else { localEOF() }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A socket error (ECONNRESET above all) is an RST on this side: pass it on as RESET.
        let code: ErrorCode
        if let io = error as? IOError { code = ErrorCode(errno: io.errnoCode) } else { code = .connectionReset }
        resetBoth(code: code, how: "reset (\(error))")
    }

    public func channelActive(context: ChannelHandlerContext) {
        // Added before the channel was registered (an accepted child's initializer), our first
        // read() only set NIO's readPending; with autoRead off, activation does not register read
        // interest for it, so the socket would be read only at EOF. Ask again now that it is active.
        readIfAllowed()
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if !done {
            if state.receivedFin && !state.sentFin {
                // Our output was already shut (the peer finished first). NIO turns the EOF that
                // arrives in that state into a full close without an inputClosed event: this is the
                // socket's FIN, so finish normally, after any data still held, not with RESET.
                if held != nil {
                    eofPending = true
                    drainingAfterClose = true
                } else {
                    localEOF()
                }
            } else {
                // The socket went away without FIN both ways: the peer must not wait for more.
                resetBoth(code: .connectionReset, how: "socket closed")
            }
        }
        context.fireChannelInactive()
    }

    private func forward(_ buffer: ByteBuffer) {
        var buffer = buffer
        while buffer.readableBytes > 0 {
            guard sendWindow.credit > 0, session.isWritable else {
                held = buffer
                if sendWindow.credit > 0 { session.waitForWritable(self) }
                return
            }
            let n = min(buffer.readableBytes, sendWindow.credit, session.maxDataPayload)
            let slice = buffer.readSlice(length: n)!
            sendWindow.consume(n)
            bytesToTunnel &+= UInt64(n)
            session.sendData(portID: portID, slice)
        }
        held = nil
        if eofPending {
            eofPending = false
            localEOF()
        }
    }

    private func readIfAllowed() {
        guard let context, !done, held == nil, !state.sentFin else { return }
        guard sendWindow.credit > 0 else { return }
        guard session.isWritable else {
            session.waitForWritable(self)
            return
        }
        context.read()
    }

    private func localEOF() {
        switch state.apply(.localEOF) {
        case .halfClosed:
            session.send(.finished(.init(portID: portID)))
        case .closed:
            session.send(.finished(.init(portID: portID)))
            closeGracefully(how: "closed")
        case .none, .duplicate:
            break
        }
    }

    // MARK: - Tunnel side

    public func tunnelReceived(_ frame: Frame) {
        guard !done else { return }
        guard let context else {
            if drainingAfterClose {
                // No socket any more, only held bytes to send: WINDOW and RESET still matter.
                switch frame {
                case .window(let w):
                    do { try sendWindow.grant(w.increment) } catch {
                        return violation("window overflow on port \(portID)")
                    }
                    tunnelBecameWritable()
                case .reset(let r):
                    _ = state.apply(.reset)
                    abort(how: "reset by peer (\(r.code))")
                default:
                    break
                }
                return
            }
            // Not joined to a socket yet: keep what the peer sends (bounded by our window).
            if case .data(let d) = frame {
                let n = d.bytes.readableBytes
                guard earlyBytes + n <= Int(receiveWindow.size) else {
                    return violation("DATA beyond the window before the connection was ready")
                }
                guard session.reserveBuffer(n) else {
                    return resetBoth(code: .limitExceeded, how: "session buffer limit exceeded before the connection was ready")
                }
                earlyBytes += n
            }
            early.append(frame)
            return
        }
        switch frame {
        case .data(let d):
            let n = d.bytes.readableBytes
            do { try receiveWindow.received(n) } catch {
                return violation("peer sent \(n) bytes beyond the window of port \(portID)")
            }
            bytesFromTunnel &+= UInt64(n)
            if state.receivedFin { return violation("DATA after FINISHED on port \(portID)") }
            guard session.reserveBuffer(n) else {
                let limit = session.settings.maxBufferedBytes >> 20
                session.logger.warning(
                    "port \(portID): the session already holds \(limit) MiB not yet written to slow sockets; resetting this port")
                return resetBoth(code: .limitExceeded, how: "session buffer limit (\(limit) MiB) exceeded")
            }
            context.writeAndFlush(wrapOutboundOut(d.bytes)).whenComplete { [self] result in
                session.releaseBuffer(n)
                guard case .success = result, !done else { return }
                if let increment = receiveWindow.consumed(n) {
                    session.send(.window(.init(portID: portID, increment: increment)))
                }
            }
        case .window(let w):
            do { try sendWindow.grant(w.increment) } catch {
                return violation("window overflow on port \(portID)")
            }
            if let h = held {
                held = nil
                forward(h)
            }
            readIfAllowed()
        case .finished:
            switch state.apply(.remoteFin) {
            case .halfClosed:
                // Shut our output once every byte before the FIN has been written.
                context.close(mode: .output, promise: nil)
            case .closed:
                closeGracefully(how: "closed")
            case .duplicate:
                violation("FINISHED twice on port \(portID)")
            case .none:
                break
            }
        case .reset(let r):
            _ = state.apply(.reset)
            abort(how: "reset by peer (\(r.code))")
        case .datagram:
            violation("DATAGRAM on TCP port \(portID)")
        default:
            break
        }
    }

    public func tunnelBecameWritable() {
        guard !done else { return }
        if let h = held {
            held = nil
            forward(h)
        }
        readIfAllowed()
    }

    public func tunnelClosed() {
        guard !done else { return }
        abort(how: "tunnel closed")
    }

    // MARK: - Ending

    /// Abort the local socket (RST) and tell the peer to do the same.
    public func resetBoth(code: ErrorCode, how: String) {
        guard !done else { return }
        _ = state.apply(.reset)
        session.send(.reset(.init(portID: portID, code: code)))
        abort(how: how)
    }

    /// CLOSE from the server: close the socket normally (FIN); the server already forgot the port.
    public func closeByRequest() {
        guard !done else { return }
        markDone(how: "closed by request")
        context?.close(promise: nil)
    }

    private func violation(_ message: String) {
        session.logger.warning("port \(portID): \(message); resetting it")
        resetBoth(code: .protocolError, how: message)
    }

    /// Close with RST: SO_LINGER {1, 0} makes close(2) send a reset and drop unsent data.
    private func abort(how: String) {
        markDone(how: how)
        guard let channel = context?.channel else { return }
        Self.abortiveClose(channel)
    }

    public static func abortiveClose(_ channel: Channel) {
        guard let provider = channel as? SocketOptionProvider else {
            channel.close(promise: nil)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Both directions finished: close once the last bytes are written.
    private func closeGracefully(how: String) {
        markDone(how: how)
        guard let context else { return }
        let channel = context.channel
        // An empty write completes after every earlier write: then nothing is lost by closing.
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    private func markDone(how: String) {
        guard !done else { return }
        done = true
        held = nil
        early = []
        session.releaseBuffer(earlyBytes)
        earlyBytes = 0
        session.unregister(portID)
        onClose?(self, how)
        onClose = nil
    }
}

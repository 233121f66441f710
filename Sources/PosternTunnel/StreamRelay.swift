import Atomics
import NIOCore
import NIOPosix
import PosternCore
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// Relays one TCP socket through one port of the tunnel, at either end (docs/protocol.md §6). Every
/// decision is `StreamPortStateMachine`'s; this handler feeds it the socket's and the session's
/// events and performs the actions it returns.
///
/// It may exist before its socket does (a connection accepted on the mediator is announced before
/// the server's own connect finishes): the machine keeps what arrives first and hands it back for
/// replay once the handler joins its channel.
public final class StreamRelay: ChannelInboundHandler, TunnelPort {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Changes only when a pipelined CONNECT refused for limits goes again under a new id (`retry(as:)`).
    public private(set) var portID: UInt32
    private let session: TunnelSession
    private var machine: StreamPortStateMachine
    private var context: ChannelHandlerContext?
    /// Bytes handed to the socket whose write has not completed yet.
    private var unwrittenBytes = 0
    /// Told once when the port is gone, with how it ended (for events and counters).
    public var onClose: ((StreamRelay, _ how: String) -> Void)?
    /// The machine's byte counts as of its last step, readable from any thread: the server's status
    /// runs on its control loop while the relay runs on its session's (docs/architecture.md,
    /// "Threads"). Relaxed stores of values this thread alone writes: no lock, no read-modify-write.
    private let publishedToTunnel = ManagedAtomic<UInt64>(0)
    private let publishedFromTunnel = ManagedAtomic<UInt64>(0)
    public var bytesToTunnel: UInt64 { publishedToTunnel.load(ordering: .relaxed) }
    public var bytesFromTunnel: UInt64 { publishedFromTunnel.load(ordering: .relaxed) }

    /// `pipelining`: the server's end of a pipelined CONNECT sends before DONE; the mediator's end
    /// exists while it connects (docs/protocol.md §5.3).
    public init(portID: UInt32, session: TunnelSession, pipelining: StreamPortStateMachine.Pipelining = .none) {
        self.portID = portID
        self.session = session
        self.machine = StreamPortStateMachine(
            sendWindow: session.established?.peerInitialWindow ?? session.settings.initialWindow,
            receiveWindow: session.settings.initialWindow, pipelining: pipelining)
    }

    /// Not ended yet.
    public var isLive: Bool { machine.phase != .released }

    // MARK: - Socket side

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        perform(machine.socketJoined())
        readIfAllowed()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        perform(machine.socketRead(unwrapInboundIn(data)))
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        readIfAllowed()
        context.fireChannelReadComplete()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            return perform(machine.socketInputClosed())
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A socket error (ECONNRESET above all) is an RST on this side: pass it on as RESET.
        let code: ErrorCode
        if let io = error as? IOError { code = ErrorCode(errno: io.errnoCode) } else { code = .connectionReset }
        perform(machine.socketFailed(code, "\(error)"))
    }

    public func channelActive(context: ChannelHandlerContext) {
        // Added before the channel was registered (an accepted child's initializer), our first
        // read() only set NIO's readPending; with autoRead off, activation does not register read
        // interest for it, so the socket would be read only at EOF. Ask again now that it is active.
        readIfAllowed()
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        perform(machine.socketClosed())
        context.fireChannelInactive()
    }

    // MARK: - Tunnel side

    public func tunnelReceived(_ frame: Frame) {
        switch machine.tunnelReceived(frame) {
        case .succeeded(let action):
            perform(action)
        case .ignored:
            break
        case .streamError(let violation, let action):
            session.logger.warning("port \(portID): \(violation); resetting it")
            perform(action)
        case .sessionError(let violation):
            // The session ends; its end releases every port, this one included.
            session.logger.warning("port \(portID): \(violation); ending the session")
            session.goAway(.protocolError, "port \(portID): \(violation)")
        }
    }

    public func tunnelBecameWritable() {
        perform(machine.tunnelBecameWritable())
    }

    public func tunnelClosed() {
        perform(machine.tunnelClosed())
    }

    // MARK: - Requests of the owner

    /// Abort the local socket (RST) and tell the peer to do the same.
    public func resetBoth(code: ErrorCode, how: String) {
        perform(machine.reset(code, reason: .aborted(how)))
    }

    /// CLOSE from the server: close the socket normally (FIN); the server already forgot the port.
    public func closeByRequest() {
        perform(machine.closeByRequest())
    }

    /// The port never came to be (its CONNECT failed): abort the local socket, if any, and send
    /// nothing; the peer has no such port (docs/protocol.md §5.3). What was kept is dropped.
    public func abandon(how: String) {
        perform(machine.abandon(reason: .aborted(how)))
    }

    // MARK: - Pipelined CONNECT, server end (docs/protocol.md §5.3)

    /// DONE came for this port.
    public func connectConfirmed() {
        machine.connectConfirmed()
    }

    /// FAILED `limitExceeded` came, and the CONNECT waits to go again: the bytes sent go back in
    /// front, nothing is sent meanwhile, and the old id is no longer this relay's.
    public func pauseForRetry() {
        machine.connectRefusedForRetry()
        publishedToTunnel.store(machine.bytesToTunnel, ordering: .relaxed)
        session.unregister(portID)
    }

    /// The CONNECT went again naming `newID`: send what was kept, under it.
    public func retry(as newID: UInt32) {
        guard machine.isPaused else { return }
        portID = newID
        session.register(self)
        perform(machine.connectRetried())
    }

    /// Close with RST: SO_LINGER {1, 0} makes close(2) send a reset and drop unsent data.
    public static func abortiveClose(_ channel: Channel) {
        guard let provider = channel as? SocketOptionProvider else {
            channel.close(promise: nil)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Room a waiting slice's buffer may have beyond twice the slice before the slice is copied out.
    static let compactionSlack = 16 * 1024

    // MARK: - Performing actions

    private func perform(_ action: StreamPortAction) {
        switch action {
        case .none:
            break
        case .sendHeld:
            sendHeld()
        case .resume:
            sendHeld()
            readIfAllowed()
        case .writeToSocket(let bytes):
            publishedFromTunnel.store(machine.bytesFromTunnel, ordering: .relaxed)
            write(bytes)
        case .reserveBuffer(let n):
            if !session.reserveBuffer(n) { perform(machine.bufferReserveFailed()) }
        case .grant(let increment):
            session.send(.window(.init(portID: portID, increment: increment)))
        case .sendFinished:
            session.send(.finished(.init(portID: portID)))
        case .shutdownOutput:
            // Queued behind every earlier write: the output is shut once they are done.
            context?.close(mode: .output, promise: nil)
        case .replay(let frames, let releaseBuffer):
            // Replayed DATA takes its share of the session budget again as it is written.
            session.releaseBuffer(releaseBuffer)
            for frame in frames { tunnelReceived(frame) }
        case .closeSocket(let how):
            close(how)
        case .end(let ending):
            end(ending)
        }
    }

    /// Sends what the socket delivered, slice by slice, while credit lasts and the tunnel takes it.
    /// The payload slices share the socket's buffer: nothing is copied.
    private func sendHeld() {
        defer { publishedToTunnel.store(machine.bytesToTunnel, ordering: .relaxed) }
        while true {
            switch machine.nextOutbound(tunnelWritable: session.isWritable, maxPayload: session.maxDataPayload) {
            case .data(let slice):
                session.sendData(portID: portID, slice)
            case .waitForTunnel:
                session.waitForWritable(self)
                return
            case .idle:
                return
            case .then(let action):
                return perform(action)
            }
        }
    }

    private func readIfAllowed() {
        guard let context else { return }
        switch machine.readDecision(tunnelWritable: session.isWritable) {
        case .read: context.read()
        case .waitForTunnel: session.waitForWritable(self)
        case .none: break
        }
    }

    private func write(_ bytes: ByteBuffer) {
        var bytes = bytes
        let n = bytes.readableBytes
        guard session.reserveBuffer(n) else {
            let limit = session.settings.maxBufferedBytes >> 20
            session.logger.warning(
                "port \(portID): the session already holds \(limit) MiB not yet written to slow sockets; resetting this port")
            return perform(machine.bufferReserveFailed())
        }
        guard let context else {
            // The machine asks for writes only while the socket is there; keep the budget right anyway.
            session.releaseBuffer(n)
            return
        }
        if unwrittenBytes > 0, bytes.storageCapacity > 2 * n + Self.compactionSlack {
            // Behind a write still pending, these bytes will wait in NIO's queue. DATA payloads are
            // slices of the buffer the tunnel read them in (up to megabytes, shared with other ports'
            // frames), and a waiting slice keeps all of it: a socket that stops reading would hold
            // many such buffers for its window's worth of bytes. Waiting bytes get a buffer their size.
            var compact = context.channel.allocator.buffer(capacity: n)
            compact.writeBuffer(&bytes)
            bytes = compact
        }
        unwrittenBytes += n
        context.writeAndFlush(wrapOutboundOut(bytes)).whenComplete { [self] result in
            unwrittenBytes -= n
            session.releaseBuffer(n)
            var succeeded = false
            if case .success = result { succeeded = true }
            perform(machine.socketWriteCompleted(n, succeeded: succeeded))
        }
    }

    private func end(_ ending: StreamPortAction.Ending) {
        switch ending.lastFrame {
        case .none: break
        case .finished: session.send(.finished(.init(portID: portID)))
        case .reset(let code): session.send(.reset(.init(portID: portID, code: code)))
        }
        session.releaseBuffer(ending.releaseBuffer)
        session.unregister(portID)
        let onClose = self.onClose
        self.onClose = nil
        onClose?(self, ending.reason.description)
        close(ending.socket)
    }

    private func close(_ how: StreamPortAction.SocketClose) {
        guard let context else { return }
        switch how {
        case .abort:
            Self.abortiveClose(context.channel)
        case .afterWrites:
            guard unwrittenBytes > 0 else {
                // Every write completed already (the usual end of a short connection): nothing to
                // wait for. An empty write and its future here cost ~4% of a forwarded connection's
                // CPU at the server (perf, issue 15).
                context.close(promise: nil)
                return
            }
            let channel = context.channel
            // An empty write completes after every earlier write: then nothing is lost by closing.
            context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                channel.close(promise: nil)
            }
        case .now:
            context.close(promise: nil)
        }
    }
}

import NIOCore
import PosternCore

/// Holds one forwarded connection to its forward's `rate=` with backpressure only: nothing is dropped
/// and nothing piles up here.
///
/// - Toward the mediator it spends what the socket delivered and, while the bucket is in debt,
///   holds the relay's next `read()`: the kernel's receive buffer fills and TCP slows the user.
/// - Toward the user it holds writes while the bucket is in debt. The relay grants the mediator
///   more window only as writes complete, so what waits here is at most the port's receive window.
///
/// It sits next to the socket, below the relay; a `close(mode: .output)` (the relay passing on the
/// mediator's FIN) waits behind the writes held here.
final class RateLimitHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let limit: ForwardRateLimit
    private var readHeld = false
    private var readTimer: Scheduled<Void>?
    private var held: CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)> = []
    private var flushHeld = false
    private var outputCloseHeld: EventLoopPromise<Void>??
    private var writeTimer: Scheduled<Void>?

    /// The most one read may take from the socket. A read is paid for after the fact, so what the
    /// last read of a transfer takes goes unpaid: small reads keep that error small.
    static let readSize = 65_536

    init(limit: ForwardRateLimit) { self.limit = limit }

    func handlerAdded(context: ChannelHandlerContext) {
        let options = context.channel.syncOptions
        try? options?.setOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.readSize))
        try? options?.setOption(ChannelOptions.maxMessagesPerRead, value: 1)
    }

    // MARK: - Toward the mediator

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        _ = limit.toMediator.spend(unwrapInboundIn(data).readableBytes, now: limit.now())
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if readHeld { return }  // the timer reads when it fires
        let wait = limit.toMediator.wait(now: limit.now())
        guard wait > .zero else { return context.read() }
        readHeld = true
        readTimer = context.eventLoop.scheduleTask(in: wait) { [self] in
            readHeld = false
            readTimer = nil
            read(context: context)
        }
    }

    // MARK: - Toward the user

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        held.append((unwrapOutboundIn(data), promise))
        drain(context: context)
    }

    func flush(context: ChannelHandlerContext) {
        if held.isEmpty { return context.flush() }
        flushHeld = true
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .output, !held.isEmpty {
            outputCloseHeld = .some(promise)
            return
        }
        context.close(mode: mode, promise: promise)
    }

    /// Writes what the bucket allows now; schedules itself for the rest.
    private func drain(context: ChannelHandlerContext) {
        guard writeTimer == nil else { return }
        var wrote = false
        while let next = held.first {
            let (bytes, promise) = next
            let wait = limit.fromMediator.wait(now: limit.now())
            if wait > .zero {
                writeTimer = context.eventLoop.scheduleTask(in: wait) { [self] in
                    writeTimer = nil
                    drain(context: context)
                }
                break
            }
            held.removeFirst()
            _ = limit.fromMediator.spend(bytes.readableBytes, now: limit.now())
            context.write(wrapOutboundOut(bytes), promise: promise)
            wrote = true
        }
        if wrote, flushHeld || held.isEmpty {
            flushHeld = false
            context.flush()
        }
        if held.isEmpty, case .some(let promise) = outputCloseHeld {
            outputCloseHeld = nil
            context.close(mode: .output, promise: promise)
        }
    }

    // MARK: - The end

    func channelInactive(context: ChannelHandlerContext) {
        failHeld()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { failHeld() }

    private func failHeld() {
        readTimer?.cancel()
        readTimer = nil
        writeTimer?.cancel()
        writeTimer = nil
        while let next = held.popFirst() { next.1?.fail(ChannelError.ioOnClosedChannel) }
        if case .some(let promise) = outputCloseHeld {
            outputCloseHeld = nil
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }
}

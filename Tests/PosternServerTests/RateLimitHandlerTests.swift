import NIOCore
import NIOEmbedded
import XCTest

@testable import PosternServer

/// A forward's `rate=` on one connection: the socket is read and written at the rate by holding
/// reads and writes, never by dropping or buffering past what the relay hands over.
final class RateLimitHandlerTests: XCTestCase {
    /// Sits next to the socket and notes, in order, what reaches it from the rate limit.
    private final class Recorder: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var events: [String] = []
        func read(context: ChannelHandlerContext) {
            events.append("read")
            context.read()
        }
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            events.append("write \(unwrapOutboundIn(data).readableBytes)")
            context.write(data, promise: promise)
        }
        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            guard mode == .output else { return context.close(mode: mode, promise: promise) }
            events.append("shutdown output")
            promise?.succeed()
        }
    }

    private var loop: EmbeddedEventLoop!
    private var channel: EmbeddedChannel!
    private var recorder: Recorder!
    private var clock = NIODeadline.uptimeNanoseconds(0)

    private func setUp(bytesPerSecond: UInt64) throws {
        loop = EmbeddedEventLoop()
        recorder = Recorder()
        let limit = ForwardRateLimit(bytesPerSecond: bytesPerSecond, now: { [unowned self] in clock })
        channel = EmbeddedChannel(handlers: [recorder, RateLimitHandler(limit: limit)], loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    private func advance(_ t: TimeAmount) {
        clock = clock + t
        loop.advanceTime(by: t)
    }

    private func bytes(_ n: Int) -> ByteBuffer { ByteBuffer(repeating: 0, count: n) }

    func testWritesBeyondTheBurstWaitTheirTurn() throws {
        try setUp(bytesPerSecond: 100_000)  // burst 64 KiB
        let promises = (0..<3).map { _ in loop.makePromise(of: Void.self) }
        for p in promises { channel.writeAndFlush(bytes(50_000), promise: p) }
        XCTAssertEqual(recorder.events, ["write 50000", "write 50000"], "65,536 in the bucket: two go, the third waits")
        let third = Flag()
        promises[2].futureResult.whenSuccess { third.value = true }
        advance(.milliseconds(300))
        XCTAssertEqual(recorder.events.count, 2, "34,464 bytes of debt take 345 ms at 100 kB/s")
        XCTAssertFalse(third.value, "the held write is not reported done: the relay grants no window for it")
        advance(.milliseconds(50))
        XCTAssertEqual(recorder.events, ["write 50000", "write 50000", "write 50000"])
        XCTAssertTrue(third.value)
    }

    func testShuttingTheOutputWaitsBehindHeldWrites() throws {
        try setUp(bytesPerSecond: 100_000)
        channel.writeAndFlush(bytes(100_000), promise: nil)
        channel.writeAndFlush(bytes(10), promise: nil)
        channel.close(mode: .output, promise: nil)
        XCTAssertEqual(recorder.events, ["write 100000"], "the FIN must not overtake the bytes before it")
        advance(.seconds(1))
        XCTAssertEqual(recorder.events, ["write 100000", "write 10", "shutdown output"])
    }

    func testReadsPauseWhileTheUploadIsOverTheRate() throws {
        try setUp(bytesPerSecond: 100_000)
        channel.read()
        XCTAssertEqual(recorder.events, ["read"])
        try channel.writeInbound(bytes(165_536))  // 100,000 bytes of debt
        XCTAssertEqual(try channel.readInbound(as: ByteBuffer.self)?.readableBytes, 165_536, "what was read passes at once")
        channel.read()
        channel.read()
        XCTAssertEqual(recorder.events, ["read"], "no read while in debt, and one held read however often asked")
        advance(.milliseconds(999))
        XCTAssertEqual(recorder.events, ["read"])
        advance(.milliseconds(2))
        XCTAssertEqual(recorder.events, ["read", "read"])
    }

    func testAClosedConnectionFailsWhatItHeld() throws {
        try setUp(bytesPerSecond: 100_000)
        channel.writeAndFlush(bytes(100_000), promise: nil)
        let held = loop.makePromise(of: Void.self)
        channel.writeAndFlush(bytes(10), promise: held)
        let failed = Flag()
        held.futureResult.whenFailure { _ in failed.value = true }
        _ = try? channel.finish()
        XCTAssertTrue(failed.value)
        advance(.seconds(5))
        XCTAssertEqual(recorder.events, ["write 100000"], "nothing is written after the end")
    }

    func testConnectionsOfOneForwardShareItsRate() throws {
        try setUp(bytesPerSecond: 100_000)
        let limit = ForwardRateLimit(bytesPerSecond: 100_000, now: { [unowned self] in clock })
        let a = Recorder()
        let b = Recorder()
        let ca = EmbeddedChannel(handlers: [a, RateLimitHandler(limit: limit)], loop: loop)
        let cb = EmbeddedChannel(handlers: [b, RateLimitHandler(limit: limit)], loop: loop)
        ca.writeAndFlush(bytes(100_000), promise: nil)
        cb.writeAndFlush(bytes(100_000), promise: nil)
        XCTAssertEqual(a.events, ["write 100000"])
        XCTAssertEqual(b.events, [], "the first connection spent the forward's burst")
        advance(.milliseconds(400))
        XCTAssertEqual(b.events, ["write 100000"])
        _ = try? ca.finish()
        _ = try? cb.finish()
    }
}

/// Set from a future's callback; the embedded loop runs it on the test's thread.
private final class Flag: @unchecked Sendable {
    var value = false
}

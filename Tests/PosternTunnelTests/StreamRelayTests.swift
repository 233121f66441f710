import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// `StreamRelay` between a real `TunnelSession` and a socket, both on `EmbeddedChannel`s: the exact
/// frames on the tunnel and the exact reads, writes and closes on the socket (docs/protocol.md §6).
final class StreamRelayTests: XCTestCase {
    private let port: UInt32 = 5

    private func data(_ text: String) -> Frame { .data(.init(portID: port, bytes: ByteBuffer(string: text))) }
    private func window(_ n: UInt32) -> Frame { .window(.init(portID: port, increment: n)) }
    private var finished: Frame { .finished(.init(portID: port)) }
    private func reset(_ code: ErrorCode) -> Frame { .reset(.init(portID: port, code: code)) }

    /// A relay registered with the session, with how it ended once it does.
    private func relay(_ tunnel: EmbeddedTunnel) -> (StreamRelay, () -> [String]) {
        let relay = StreamRelay(portID: port, session: tunnel.session)
        var ends: [String] = []
        relay.onClose = { _, how in ends.append(how) }
        tunnel.session.register(relay)
        return (relay, { ends })
    }

    /// A relay joined to a socket; the read it asks for at once is taken from the recorder.
    private func joined(_ tunnel: EmbeddedTunnel) throws -> (StreamRelay, EmbeddedSocket, () -> [String]) {
        let (relay, ends) = relay(tunnel)
        let socket = try EmbeddedSocket()
        try socket.join(relay)
        XCTAssertEqual(socket.recorder.take(), [.read])
        return (relay, socket, ends)
    }

    // MARK: - Early frames

    func testFramesBeforeTheSocketJoinsAreKeptThenReplayed() throws {
        let tunnel = try EmbeddedTunnel(window: 100)
        let (relay, ends) = relay(tunnel)
        try tunnel.deliver(data("hello "))
        try tunnel.deliver(data("world"))
        try tunnel.deliver(finished)
        XCTAssertEqual(tunnel.session.bufferedBytes, 11, "kept DATA counts in the session budget")
        XCTAssertEqual(try tunnel.framesOut(), [])

        let socket = try EmbeddedSocket()
        try socket.join(relay)
        XCTAssertEqual(
            socket.recorder.take(), [.write("hello world"), .close(.output), .read],
            "replayed in order (consecutive DATA joined), the output shut after them; our direction reads on")
        XCTAssertEqual(tunnel.session.bufferedBytes, 0, "written: the budget is back")
        XCTAssertEqual(relay.bytesFromTunnel, 11)
        XCTAssertEqual(try tunnel.framesOut(), [], "11 bytes of a 100-byte window: no WINDOW yet")

        try socket.receive("bye")
        socket.receiveEOF()
        XCTAssertEqual(try tunnel.framesOut(), [data("bye"), finished])
        XCTAssertEqual(
            socket.recorder.take(), [.read, .close(.all)], "every write done already: closed at once, no empty write to wait on")
        XCTAssertEqual(ends(), ["closed"])
        XCTAssertNil(tunnel.session.port(port))
    }

    func testEarlyDataBeyondTheSessionBudgetResetsThePort() throws {
        let tunnel = try EmbeddedTunnel(window: 100, maxBufferedBytes: 10)
        let (relay, ends) = relay(tunnel)
        try tunnel.deliver(data("123456"))
        try tunnel.deliver(data("7890ab"))
        XCTAssertEqual(try tunnel.framesOut(), [reset(.limitExceeded)])
        XCTAssertEqual(tunnel.session.bufferedBytes, 0, "what was kept is given back")
        XCTAssertEqual(ends(), ["session buffer limit exceeded before the connection was ready"])
        XCTAssertNil(tunnel.session.port(port))
        XCTAssertTrue(tunnel.channel.isActive, "only the port is reset")

        // A socket that joins a port that already ended is reset, not left open.
        let socket = try EmbeddedSocket()
        try socket.join(relay)
        XCTAssertEqual(socket.recorder.take(), [.close(.all)])
    }

    func testEarlyDataBeyondOurWindowResetsThePort() throws {
        let tunnel = try EmbeddedTunnel(window: 8)
        _ = relay(tunnel)
        try tunnel.deliver(data("12345"))
        try tunnel.deliver(data("6789"))
        XCTAssertEqual(try tunnel.framesOut(), [reset(.protocolError)])
        XCTAssertEqual(tunnel.session.bufferedBytes, 0)
    }

    // MARK: - Flow control: a stalled window, a full tunnel

    func testAStalledWindowStopsReadingUntilWindowComes() throws {
        let tunnel = try EmbeddedTunnel(peerWindow: 4)
        let (relay, socket, _) = try joined(tunnel)
        // One read delivering two buffers: the second queues behind what is held.
        socket.channel.pipeline.fireChannelRead(ByteBuffer(string: "abcdef"))
        socket.channel.pipeline.fireChannelRead(ByteBuffer(string: "gh"))
        socket.channel.pipeline.fireChannelReadComplete()
        XCTAssertEqual(try tunnel.framesOut(), [data("abcd")])
        XCTAssertEqual(socket.recorder.take(), [], "no credit: no read")

        try tunnel.deliver(window(3))
        XCTAssertEqual(try tunnel.framesOut(), [data("ef"), data("g")], "one DATA per buffer held")
        XCTAssertEqual(socket.recorder.take(), [])
        try tunnel.deliver(window(10))
        XCTAssertEqual(try tunnel.framesOut(), [data("h")])
        XCTAssertEqual(socket.recorder.take(), [.read], "credit is back and nothing is held")
        XCTAssertEqual(relay.bytesToTunnel, 8)
    }

    func testAFullTunnelStopsReadingAndResumesWhenItDrains() throws {
        let tunnel = try EmbeddedTunnel()
        let (_, socket, _) = try joined(tunnel)
        tunnel.setWritable(false)
        try socket.receive("hold me")
        XCTAssertEqual(try tunnel.framesOut(), [])
        XCTAssertEqual(socket.recorder.take(), [], "the tunnel is full: no read")

        tunnel.setWritable(true)
        XCTAssertEqual(try tunnel.framesOut(), [data("hold me")])
        XCTAssertEqual(socket.recorder.take(), [.read])

        // Everything sent, but the tunnel filled by the end of the read: wait for it, then read.
        socket.channel.pipeline.fireChannelRead(ByteBuffer(string: "x"))
        XCTAssertEqual(try tunnel.framesOut(), [data("x")])
        tunnel.channel.isWritable = false
        socket.channel.pipeline.fireChannelReadComplete()
        XCTAssertEqual(socket.recorder.take(), [])
        tunnel.setWritable(true)
        XCTAssertEqual(socket.recorder.take(), [.read])
    }

    func testDataIsWrittenToTheSocketAndGrantedBackInBatches() throws {
        let tunnel = try EmbeddedTunnel(window: 100)
        let (relay, socket, _) = try joined(tunnel)
        try tunnel.deliver(data(String(repeating: "a", count: 20)))
        XCTAssertEqual(socket.recorder.take(), [.write(String(repeating: "a", count: 20))])
        XCTAssertEqual(try tunnel.framesOut(), [])
        try tunnel.deliver(data(String(repeating: "b", count: 10)))
        XCTAssertEqual(try tunnel.framesOut(), [window(30)], "a quarter of the window written")
        XCTAssertEqual(relay.bytesFromTunnel, 30)
        XCTAssertEqual(tunnel.session.bufferedBytes, 0)
    }

    func testDataBeyondTheWindowResetsOnlyThePort() throws {
        let tunnel = try EmbeddedTunnel(window: 10)
        let (_, socket, ends) = try joined(tunnel)
        try tunnel.deliver(data("0123456789A"))
        XCTAssertEqual(try tunnel.framesOut(), [reset(.protocolError)])
        XCTAssertEqual(socket.recorder.take(), [.close(.all)], "aborted, nothing written")
        XCTAssertEqual(ends(), ["peer sent 11 bytes beyond the window"])
        XCTAssertTrue(tunnel.channel.isActive)
        XCTAssertNil(tunnel.session.end)
    }

    // MARK: - Half-close, both ways

    func testSocketEOFFirstThenThePeerFinishes() throws {
        let tunnel = try EmbeddedTunnel()
        let (_, socket, ends) = try joined(tunnel)
        try socket.receive("request")
        socket.receiveEOF()
        XCTAssertEqual(try tunnel.framesOut(), [data("request"), finished])
        XCTAssertEqual(socket.recorder.take(), [.read], "the read asked after the first bytes; none after EOF")

        try tunnel.deliver(data("response"))
        XCTAssertEqual(socket.recorder.take(), [.write("response")], "the other direction goes on")
        try tunnel.deliver(finished)
        XCTAssertEqual(socket.recorder.take(), [.close(.all)], "the response was written: closed at once")
        XCTAssertEqual(ends(), ["closed"])
        XCTAssertNil(tunnel.session.port(port))
    }

    func testTheCloseWaitsForAWriteStillPending() throws {
        // A socket that has not taken the response yet: the close must not drop it.
        let tunnel = try EmbeddedTunnel()
        let relay = StreamRelay(portID: port, session: tunnel.session)
        tunnel.session.register(relay)
        let socket = try EmbeddedSocket()
        let held = HeldWrites()
        try socket.channel.pipeline.syncOperations.addHandler(held)
        try socket.join(relay)
        XCTAssertEqual(socket.recorder.take(), [.read])
        try socket.receive("request")
        socket.receiveEOF()
        XCTAssertEqual(try tunnel.framesOut(), [data("request"), finished])
        _ = socket.recorder.take()

        try tunnel.deliver(data("response"))
        try tunnel.deliver(finished)
        XCTAssertEqual(socket.recorder.take(), [], "the response waits in the socket, and the close behind it")
        XCTAssertTrue(socket.channel.isActive)

        held.release()
        XCTAssertEqual(socket.recorder.take(), [.write("response"), .write(""), .close(.all)], "closed only once it is written")
    }

    func testThePeerFinishesFirstThenTheSocket() throws {
        let tunnel = try EmbeddedTunnel()
        let (_, socket, ends) = try joined(tunnel)
        try tunnel.deliver(data("response"))
        try tunnel.deliver(finished)
        XCTAssertEqual(socket.recorder.take(), [.write("response"), .close(.output)])
        XCTAssertEqual(ends(), [])

        try socket.receive("more")
        XCTAssertEqual(try tunnel.framesOut(), [data("more")], "our direction goes on")
        socket.receiveEOF()
        XCTAssertEqual(try tunnel.framesOut(), [finished])
        XCTAssertEqual(ends(), ["closed"])
    }

    func testTheSocketClosingAfterThePeerFinishedIsItsFin() throws {
        // NIO reports the EOF of a socket whose output is shut as a full close, without input-closed.
        let tunnel = try EmbeddedTunnel()
        let (_, socket, ends) = try joined(tunnel)
        try tunnel.deliver(finished)
        XCTAssertEqual(socket.recorder.take(), [.close(.output)])
        socket.channel.pipeline.fireChannelInactive()
        XCTAssertEqual(try tunnel.framesOut(), [finished], "FINISHED, not RESET")
        XCTAssertEqual(ends(), ["closed"])
    }

    // MARK: - Drain before close

    func testHeldBytesAreSentAfterTheSocketClosedThenFinished() throws {
        let tunnel = try EmbeddedTunnel(peerWindow: 4)
        let (_, socket, ends) = try joined(tunnel)
        try socket.receive("0123456789")
        XCTAssertEqual(try tunnel.framesOut(), [data("0123")])
        try tunnel.deliver(finished)
        XCTAssertEqual(socket.recorder.take(), [.close(.output)])

        // The socket's FIN closes it (our output is shut) and its handlers go.
        try socket.channel.close().wait()
        socket.channel.embeddedEventLoop.run()
        XCTAssertEqual(try tunnel.framesOut(), [], "held bytes first")
        XCTAssertEqual(ends(), [], "the port outlives its socket")
        XCTAssertNotNil(tunnel.session.port(port))

        try tunnel.deliver(window(4))
        XCTAssertEqual(try tunnel.framesOut(), [data("4567")])
        try tunnel.deliver(window(4))
        XCTAssertEqual(try tunnel.framesOut(), [data("89"), finished])
        XCTAssertEqual(ends(), ["closed"])
        XCTAssertNil(tunnel.session.port(port))
    }

    // MARK: - RST, both ways

    func testResetFromThePeerAbortsTheSocket() throws {
        let tunnel = try EmbeddedTunnel()
        let (_, socket, ends) = try joined(tunnel)
        try tunnel.deliver(reset(.connectionReset))
        XCTAssertEqual(socket.recorder.take(), [.close(.all)], "no graceful write before the close")
        XCTAssertEqual(try tunnel.framesOut(), [], "a RESET is never answered")
        XCTAssertEqual(ends(), ["reset by peer (\(ErrorCode.connectionReset))"])
        XCTAssertNil(tunnel.session.port(port))
        try tunnel.deliver(data("late"))
        XCTAssertEqual(socket.recorder.take(), [], "frames that crossed the RESET are dropped")
    }

    func testASocketErrorBecomesReset() throws {
        let tunnel = try EmbeddedTunnel()
        let (_, socket, ends) = try joined(tunnel)
        socket.channel.pipeline.fireErrorCaught(IOError(errnoCode: ECONNREFUSED, reason: "read"))
        XCTAssertEqual(try tunnel.framesOut(), [reset(.refused)])
        XCTAssertEqual(socket.recorder.take(), [.close(.all)])
        XCTAssertEqual(ends().count, 1)
    }

    func testASocketGoneWithoutFinResets() throws {
        let tunnel = try EmbeddedTunnel()
        let (_, socket, ends) = try joined(tunnel)
        try socket.channel.close().wait()
        XCTAssertEqual(try tunnel.framesOut(), [reset(.connectionReset)])
        XCTAssertEqual(ends(), ["socket closed"])
    }

    func testDuplicateFinishedAndDataAfterFinishedResetThePort() throws {
        let tunnel = try EmbeddedTunnel()
        var (_, socket, ends) = try joined(tunnel)
        try tunnel.deliver(finished)
        try tunnel.deliver(finished)
        XCTAssertEqual(try tunnel.framesOut(), [reset(.protocolError)])
        XCTAssertEqual(socket.recorder.take(), [.close(.output), .close(.all)])
        XCTAssertEqual(ends(), ["FINISHED twice"])

        let second = try EmbeddedTunnel()
        (_, socket, ends) = try joined(second)
        try second.deliver(finished)
        try second.deliver(data("late"))
        XCTAssertEqual(try second.framesOut(), [reset(.protocolError)])
        XCTAssertEqual(socket.recorder.take(), [.close(.output), .close(.all)], "nothing written after the FIN")
        XCTAssertEqual(ends(), ["DATA after FINISHED"])
    }

    // MARK: - The owner and the session

    func testTheSessionEndingAbortsThePort() throws {
        let tunnel = try EmbeddedTunnel()
        let (_, socket, ends) = try joined(tunnel)
        try tunnel.channel.close().wait()
        XCTAssertEqual(socket.recorder.take(), [.close(.all)])
        XCTAssertEqual(ends(), ["tunnel closed"])
    }

    func testCloseByRequestClosesNormallyWithoutAFrame() throws {
        let tunnel = try EmbeddedTunnel()
        let (relay, socket, ends) = try joined(tunnel)
        relay.closeByRequest()
        XCTAssertEqual(socket.recorder.take(), [.close(.all)])
        XCTAssertEqual(try tunnel.framesOut(), [])
        XCTAssertEqual(ends(), ["closed by request"])
    }

    func testResetBothSendsResetAndAborts() throws {
        let tunnel = try EmbeddedTunnel()
        let (relay, ends) = relay(tunnel)
        relay.resetBoth(code: .refused, how: "connect failed")
        XCTAssertEqual(try tunnel.framesOut(), [reset(.refused)])
        XCTAssertEqual(ends(), ["connect failed"])
        relay.resetBoth(code: .refused, how: "again")
        XCTAssertEqual(try tunnel.framesOut(), [], "once")
        XCTAssertEqual(ends(), ["connect failed"])
    }
}

/// Keeps the writes that pass it (a socket whose send buffer is full) until `release`.
private final class HeldWrites: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    private var context: ChannelHandlerContext?
    private var held: [(NIOAny, EventLoopPromise<Void>?)] = []

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        held.append((data, promise))
    }

    func flush(context: ChannelHandlerContext) {}

    func release() {
        guard let context else { return }
        let writes = held
        held = []
        for (data, promise) in writes { context.write(data, promise: promise) }
        context.flush()
    }
}

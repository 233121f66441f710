import NIOCore
import PosternCore
import PosternWire
import XCTest

/// One relayed TCP connection (docs/protocol.md §6): every input in the states where it matters.
final class StreamPortStateMachineTests: XCTestCase {
    typealias M = StreamPortStateMachine
    typealias Ending = StreamPortAction.Ending

    // MARK: - Helpers

    private func bytes(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
    private func bytes(count: Int) -> ByteBuffer { ByteBuffer(repeating: 0x61, count: count) }
    private func data(_ b: ByteBuffer) -> Frame { .data(.init(portID: 7, bytes: b)) }
    private func data(_ text: String) -> Frame { data(bytes(text)) }
    private func window(_ n: UInt32) -> Frame { .window(.init(portID: 7, increment: n)) }
    private let finished = Frame.finished(.init(portID: 7))
    private func reset(_ code: ErrorCode) -> Frame { .reset(.init(portID: 7, code: code)) }

    /// A port whose socket joined with nothing kept before.
    private func joined(send: UInt32 = 1000, receive: UInt32 = 1000, file: StaticString = #filePath, line: UInt = #line) -> M {
        var m = M(sendWindow: send, receiveWindow: receive)
        XCTAssertEqual(m.socketJoined(), .replay([], releaseBuffer: 0), file: file, line: line)
        XCTAssertEqual(m.phase, .joined, file: file, line: line)
        return m
    }

    /// Asks `nextOutbound` until it answers something other than DATA, as the relay does.
    private func drain(_ m: inout M, writable: Bool = true, maxPayload: Int = 1 << 20) -> [M.Outbound] {
        var out: [M.Outbound] = []
        while true {
            let next = m.nextOutbound(tunnelWritable: writable, maxPayload: maxPayload)
            out.append(next)
            guard case .data = next else { return out }
            XCTAssertLessThan(out.count, 10_000, "nextOutbound never stops")
            if out.count >= 10_000 { return out }
        }
    }

    private func texts(_ out: [M.Outbound]) -> [String] {
        out.compactMap { if case .data(let b) = $0 { return String(buffer: b) } else { return nil } }
    }

    private func end(
        _ last: StreamPortAction.LastFrame, _ socket: StreamPortAction.SocketClose, _ reason: StreamPortEnd, release: Int = 0
    ) -> StreamPortAction {
        .end(Ending(lastFrame: last, socket: socket, reason: reason, releaseBuffer: release))
    }

    private func violation(_ v: StreamPortViolation, release: Int = 0) -> StreamPortResult {
        .streamError(v, then: end(.reset(.protocolError), .abort, .violation(v), release: release))
    }

    /// Every input a released port can get: none of them does anything.
    private func assertInert(_ m: M, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(m.phase, .released, file: file, line: line)
        for frame in [
            data("x"), window(1), finished, reset(.refused), .datagram(.init(portID: 7, peer: Endpoint(.anyV4, 1), bytes: bytes("d"))),
        ] {
            var c = m
            XCTAssertEqual(c.tunnelReceived(frame), .ignored, "\(frame.name)", file: file, line: line)
        }
        var c = m
        XCTAssertEqual(c.socketRead(bytes("x")), .none, file: file, line: line)
        XCTAssertEqual(c.socketInputClosed(), .none, file: file, line: line)
        XCTAssertEqual(c.socketFailed(.connectionReset, "e"), .none, file: file, line: line)
        XCTAssertEqual(c.socketClosed(), .none, file: file, line: line)
        XCTAssertEqual(c.socketWriteCompleted(0, succeeded: true), .none, file: file, line: line)
        XCTAssertEqual(c.tunnelBecameWritable(), .none, file: file, line: line)
        XCTAssertEqual(c.tunnelClosed(), .none, file: file, line: line)
        XCTAssertEqual(c.reset(.refused, reason: .aborted("x")), .none, file: file, line: line)
        XCTAssertEqual(c.closeByRequest(), .none, file: file, line: line)
        XCTAssertEqual(c.bufferReserveFailed(), .none, file: file, line: line)
        XCTAssertEqual(c.readDecision(tunnelWritable: true), .none, file: file, line: line)
        XCTAssertEqual(c.nextOutbound(tunnelWritable: true, maxPayload: 100), .idle, file: file, line: line)
        XCTAssertEqual(c.heldBytes, 0, file: file, line: line)
        XCTAssertEqual(c.earlyBufferedBytes, 0, file: file, line: line)
    }

    // MARK: - Socket to tunnel: credit, payload limit, a full tunnel

    func testSocketBytesBecomeDataWithinCreditAndPayloadLimit() {
        var m = joined(send: 25)
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .read)
        XCTAssertEqual(m.socketRead(bytes(String(repeating: "abcdefghij", count: 3))), .sendHeld)
        let out = drain(&m, maxPayload: 10)
        XCTAssertEqual(texts(out), ["abcdefghij", "abcdefghij", "abcde"])
        XCTAssertEqual(out.last, .idle, "no credit: wait for WINDOW, not for the tunnel")
        XCTAssertEqual(m.heldBytes, 5)
        XCTAssertEqual(m.bytesToTunnel, 25)
        XCTAssertEqual(m.sendWindow.credit, 0)
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .none, "no reading while bytes are held")

        XCTAssertEqual(m.tunnelReceived(window(3)), .succeeded(.resume))
        XCTAssertEqual(texts(drain(&m)), ["fgh"])
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .none)
        XCTAssertEqual(m.tunnelReceived(window(100)), .succeeded(.resume))
        XCTAssertEqual(drain(&m), [.data(bytes("ij")), .idle])
        XCTAssertEqual(m.heldBytes, 0)
        XCTAssertEqual(m.bytesToTunnel, 30)
        XCTAssertEqual(m.sendWindow.credit, 98)
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .read, "credit is back and nothing is held")
    }

    func testAFullTunnelHoldsTheBytesAndWaitsForIt() {
        var m = joined()
        XCTAssertEqual(m.readDecision(tunnelWritable: false), .waitForTunnel, "credit but a full tunnel: pause reading")
        XCTAssertEqual(m.socketRead(bytes("hello")), .sendHeld)
        XCTAssertEqual(drain(&m, writable: false), [.waitForTunnel])
        XCTAssertEqual(m.heldBytes, 5)
        XCTAssertEqual(m.bytesToTunnel, 0)
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .none)

        XCTAssertEqual(m.tunnelBecameWritable(), .resume)
        XCTAssertEqual(drain(&m), [.data(bytes("hello")), .idle])
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .read)
    }

    func testTheTunnelFillingMidwayHoldsTheRest() {
        var m = joined()
        _ = m.socketRead(bytes("abcdef"))
        XCTAssertEqual(m.nextOutbound(tunnelWritable: true, maxPayload: 2), .data(bytes("ab")))
        XCTAssertEqual(m.nextOutbound(tunnelWritable: false, maxPayload: 2), .waitForTunnel)
        XCTAssertEqual(m.heldBytes, 4)
        XCTAssertEqual(m.tunnelBecameWritable(), .resume)
        XCTAssertEqual(texts(drain(&m, maxPayload: 2)), ["cd", "ef"])
    }

    func testSeveralBuffersOfOneReadQueueBehindTheHeldOne() {
        var m = joined(send: 4)
        XCTAssertEqual(m.socketRead(bytes("abcdef")), .sendHeld)
        XCTAssertEqual(drain(&m), [.data(bytes("abcd")), .idle])
        XCTAssertEqual(m.socketRead(bytes("gh")), .none, "queued behind the held bytes, not sent ahead of them")
        XCTAssertEqual(m.socketRead(bytes("ij")), .none)
        XCTAssertEqual(m.heldBytes, 6)
        _ = m.tunnelReceived(window(100))
        XCTAssertEqual(
            drain(&m), [.data(bytes("ef")), .data(bytes("gh")), .data(bytes("ij")), .idle],
            "in order, one DATA per buffer: joining them would copy every byte")
    }

    func testAnEmptyReadSendsNoData() {
        var m = joined()
        XCTAssertEqual(m.socketRead(ByteBuffer()), .sendHeld)
        XCTAssertEqual(drain(&m), [.idle])
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .read)
    }

    func testReadDecisionInEveryState() {
        var waiting = M(sendWindow: 10, receiveWindow: 10)
        XCTAssertEqual(waiting.readDecision(tunnelWritable: true), .none, "no socket yet")
        XCTAssertEqual(joined(send: 0).readDecision(tunnelWritable: true), .none, "no credit")
        XCTAssertEqual(joined(send: 0).readDecision(tunnelWritable: false), .none, "no credit: WINDOW resumes, not the tunnel")
        var m = joined()
        _ = m.tunnelReceived(finished)
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .read, "the peer's FIN does not stop our direction")
        XCTAssertEqual(m.socketInputClosed(), end(.finished, .afterWrites, .closed))
        var half = joined()
        XCTAssertEqual(half.socketInputClosed(), .sendFinished)
        XCTAssertEqual(half.readDecision(tunnelWritable: true), .none, "nothing more to read after EOF")
        _ = waiting.tunnelClosed()
        XCTAssertEqual(waiting.readDecision(tunnelWritable: true), .none)
    }

    // MARK: - Half-close, both ways

    func testLocalEOFThenPeerFinished() {
        var m = joined()
        XCTAssertEqual(m.socketInputClosed(), .sendFinished)
        XCTAssertTrue(m.halves.sentFin)
        // The other direction goes on.
        XCTAssertEqual(m.tunnelReceived(data("reply")), .succeeded(.writeToSocket(bytes("reply"))))
        XCTAssertEqual(m.tunnelReceived(finished), .succeeded(end(.none, .afterWrites, .closed)))
        assertInert(m)
    }

    func testPeerFinishedThenLocalEOF() {
        var m = joined()
        XCTAssertEqual(m.tunnelReceived(finished), .succeeded(.shutdownOutput))
        // Our direction goes on.
        XCTAssertEqual(m.socketRead(bytes("more")), .sendHeld)
        XCTAssertEqual(drain(&m), [.data(bytes("more")), .idle])
        XCTAssertEqual(m.socketInputClosed(), end(.finished, .afterWrites, .closed))
        assertInert(m)
    }

    func testEOFBehindHeldBytesSendsFinishedAfterThem() {
        var m = joined(send: 3)
        _ = m.socketRead(bytes("abcde"))
        XCTAssertEqual(drain(&m), [.data(bytes("abc")), .idle])
        XCTAssertEqual(m.socketInputClosed(), .none, "FINISHED must not overtake held bytes")
        XCTAssertTrue(m.isEOFPending)
        XCTAssertFalse(m.halves.sentFin)
        XCTAssertEqual(m.tunnelReceived(window(1)), .succeeded(.resume))
        XCTAssertEqual(drain(&m), [.data(bytes("d")), .idle])
        XCTAssertEqual(m.tunnelReceived(window(10)), .succeeded(.resume))
        XCTAssertEqual(drain(&m), [.data(bytes("e")), .then(.sendFinished)])
        XCTAssertTrue(m.halves.sentFin)
        XCTAssertEqual(drain(&m), [.idle])
    }

    func testEOFBehindHeldBytesAfterThePeerFinishedClosesAfterThem() {
        var m = joined()
        _ = m.tunnelReceived(finished)
        _ = m.socketRead(bytes("tail"))
        XCTAssertEqual(drain(&m, writable: false), [.waitForTunnel])
        XCTAssertEqual(m.socketInputClosed(), .none)
        XCTAssertEqual(m.tunnelBecameWritable(), .resume)
        XCTAssertEqual(drain(&m), [.data(bytes("tail")), .then(end(.finished, .afterWrites, .closed))])
        assertInert(m)
    }

    func testSocketClosingAfterThePeerFinishedIsItsFin() {
        // NIO reports the EOF of a socket whose output is shut as a full close, without input-closed.
        var m = joined()
        _ = m.tunnelReceived(finished)
        XCTAssertEqual(m.socketClosed(), end(.finished, .afterWrites, .closed))
        assertInert(m)
    }

    // MARK: - Drain before close

    func testHeldBytesDrainAfterTheSocketClosedThenFinished() {
        var m = joined(send: 4)
        _ = m.socketRead(bytes("0123456789"))
        XCTAssertEqual(drain(&m), [.data(bytes("0123")), .idle])
        XCTAssertEqual(m.tunnelReceived(finished), .succeeded(.shutdownOutput))
        XCTAssertEqual(m.socketClosed(), .none, "the port outlives its socket until the held bytes are sent")
        XCTAssertEqual(m.phase, .draining)
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .none, "no socket to read")
        XCTAssertEqual(m.tunnelReceived(window(4)), .succeeded(.resume))
        XCTAssertEqual(drain(&m), [.data(bytes("4567")), .idle])
        XCTAssertEqual(m.tunnelBecameWritable(), .resume)
        XCTAssertEqual(drain(&m), [.idle])
        XCTAssertEqual(m.tunnelReceived(window(100)), .succeeded(.resume))
        XCTAssertEqual(drain(&m), [.data(bytes("89")), .then(end(.finished, .afterWrites, .closed))])
        XCTAssertEqual(m.bytesToTunnel, 10)
        assertInert(m)
    }

    func testADrainingPortIsResetByThePeerAndByRuleBreaking() {
        func draining() -> M {
            var m = joined(send: 1)
            _ = m.socketRead(bytes("xy"))
            _ = drain(&m)
            _ = m.tunnelReceived(finished)
            _ = m.socketClosed()
            XCTAssertEqual(m.phase, .draining)
            return m
        }
        var m = draining()
        XCTAssertEqual(m.tunnelReceived(reset(.refused)), .succeeded(end(.none, .abort, .resetByPeer(.refused))))
        assertInert(m)
        m = draining()
        XCTAssertEqual(m.tunnelReceived(data("late")), violation(.dataAfterFinished))
        m = draining()
        XCTAssertEqual(m.tunnelReceived(finished), violation(.finishedTwice))
        m = draining()
        XCTAssertEqual(m.tunnelClosed(), end(.none, .abort, .tunnelClosed))
        m = draining()
        XCTAssertEqual(m.closeByRequest(), end(.none, .now, .closedByRequest))
    }

    // MARK: - RST, both ways

    func testResetFromThePeerAbortsTheSocketWithoutAnswer() {
        for prefix in 0..<3 {
            var m = joined()
            if prefix == 1 { _ = m.socketInputClosed() }
            if prefix == 2 { _ = m.tunnelReceived(finished) }
            XCTAssertEqual(m.tunnelReceived(reset(.connectionReset)), .succeeded(end(.none, .abort, .resetByPeer(.connectionReset))))
            XCTAssertTrue(m.halves.isReset)
            assertInert(m)
        }
    }

    func testSocketErrorBecomesResetWithItsCode() {
        var m = joined()
        _ = m.socketRead(bytes("held"))
        _ = drain(&m, writable: false)
        XCTAssertEqual(m.socketFailed(.connectionReset, "ECONNRESET"), end(.reset(.connectionReset), .abort, .socketError("ECONNRESET")))
        XCTAssertEqual(m.heldBytes, 0, "unsent bytes are dropped, as an RST drops them")
        assertInert(m)
    }

    func testSocketClosedWithoutFinBothWaysResets() {
        var m = joined()
        XCTAssertEqual(m.socketClosed(), end(.reset(.connectionReset), .abort, .socketClosed))
        assertInert(m)
        var half = joined()
        _ = half.socketInputClosed()
        XCTAssertEqual(half.socketClosed(), end(.reset(.connectionReset), .abort, .socketClosed), "only our FIN went out")
    }

    func testOwnerResetAndCloseByRequest() {
        var m = joined()
        XCTAssertEqual(m.reset(.refused, reason: .aborted("connect failed")), end(.reset(.refused), .abort, .aborted("connect failed")))
        assertInert(m)
        var c = joined()
        XCTAssertEqual(c.closeByRequest(), end(.none, .now, .closedByRequest))
        assertInert(c)
    }

    func testTunnelClosedAbortsWithoutAFrame() {
        var m = joined()
        _ = m.socketRead(bytes("held"))
        _ = drain(&m, writable: false)
        XCTAssertEqual(m.tunnelClosed(), end(.none, .abort, .tunnelClosed))
        assertInert(m)
    }

    // MARK: - Tunnel to socket: writes, grants, overrun

    func testDataIsWrittenAndGrantedInBatchesOnceWritten() {
        var m = joined(receive: 100)
        for _ in 0..<3 { XCTAssertEqual(m.tunnelReceived(data(bytes(count: 10))), .succeeded(.writeToSocket(bytes(count: 10)))) }
        XCTAssertEqual(m.bytesFromTunnel, 30)
        XCTAssertEqual(m.socketWriteCompleted(10, succeeded: true), .none)
        XCTAssertEqual(m.socketWriteCompleted(10, succeeded: false), .none, "a failed write grants nothing")
        XCTAssertEqual(m.socketWriteCompleted(10, succeeded: true), .none)
        XCTAssertEqual(m.tunnelReceived(data(bytes(count: 10))), .succeeded(.writeToSocket(bytes(count: 10))))
        XCTAssertEqual(m.socketWriteCompleted(10, succeeded: true), .grant(30), "a quarter of the window consumed")
    }

    func testDataBeyondTheWindowResetsThePort() {
        var m = joined(receive: 10)
        XCTAssertEqual(m.tunnelReceived(data(bytes(count: 11))), violation(.dataBeyondWindow(bytes: 11)))
        XCTAssertEqual(m.bytesFromTunnel, 0)
        assertInert(m)

        // Written but not granted back still counts.
        var w = joined(receive: 100)
        _ = w.tunnelReceived(data(bytes(count: 100)))
        XCTAssertEqual(w.socketWriteCompleted(20, succeeded: true), .none, "less than a quarter: not granted yet")
        XCTAssertEqual(w.tunnelReceived(data("x")), violation(.dataBeyondWindow(bytes: 1)))
    }

    func testRuleBreakingFramesResetThePort() {
        var m = joined()
        _ = m.tunnelReceived(finished)
        XCTAssertEqual(m.tunnelReceived(data("late")), violation(.dataAfterFinished))
        XCTAssertEqual(m.bytesFromTunnel, 4, "counted: it passed the window")

        m = joined()
        _ = m.tunnelReceived(finished)
        XCTAssertEqual(m.tunnelReceived(finished), violation(.finishedTwice))

        m = joined(send: 1)
        XCTAssertEqual(m.tunnelReceived(window(UInt32(Int32.max))), violation(.windowOverflow))

        m = joined()
        let dg = Frame.datagram(.init(portID: 7, peer: Endpoint(.anyV4, 53), bytes: bytes("d")))
        XCTAssertEqual(m.tunnelReceived(dg), violation(.datagramOnStreamPort))
        assertInert(m)

        m = joined()
        XCTAssertEqual(m.tunnelReceived(.ping(.init(token: 1))), .ignored, "not a relay frame")
        XCTAssertEqual(m.phase, .joined)
    }

    func testSessionBufferExhaustedResetsThePort() {
        var m = joined()
        _ = m.tunnelReceived(data("x"))
        XCTAssertEqual(m.bufferReserveFailed(), end(.reset(.limitExceeded), .abort, .sessionBufferFull))
        assertInert(m)
    }

    // MARK: - Early frames, before the socket joins

    func testEarlyFramesAreKeptThenReplayedInOrder() {
        var m = M(sendWindow: 1000, receiveWindow: 100)
        XCTAssertEqual(m.phase, .awaitingSocket)
        XCTAssertEqual(m.tunnelReceived(data("hello")), .succeeded(.reserveBuffer(5)))
        XCTAssertEqual(m.tunnelReceived(window(10)), .succeeded(.none))
        XCTAssertEqual(m.tunnelReceived(data("world")), .succeeded(.reserveBuffer(5)))
        XCTAssertEqual(m.tunnelReceived(finished), .succeeded(.none))
        XCTAssertEqual(m.earlyBufferedBytes, 10)
        XCTAssertEqual(m.earlyFrameCount, 4)
        XCTAssertEqual(m.bytesFromTunnel, 0, "counted when replayed")
        XCTAssertEqual(m.tunnelBecameWritable(), .resume, "harmless: nothing to send, no socket to read")
        XCTAssertEqual(drain(&m), [.idle])

        XCTAssertEqual(m.socketJoined(), .replay([data("hello"), window(10), data("world"), finished], releaseBuffer: 10))
        XCTAssertEqual(m.earlyBufferedBytes, 0)
        XCTAssertEqual(m.socketJoined(), .none, "joins once")
        XCTAssertEqual(m.tunnelReceived(data("hello")), .succeeded(.writeToSocket(bytes("hello"))))
        XCTAssertEqual(m.tunnelReceived(window(10)), .succeeded(.resume))
        XCTAssertEqual(m.sendWindow.credit, 1010)
        XCTAssertEqual(m.tunnelReceived(data("world")), .succeeded(.writeToSocket(bytes("world"))))
        XCTAssertEqual(m.tunnelReceived(finished), .succeeded(.shutdownOutput))
        XCTAssertEqual(m.bytesFromTunnel, 10)
    }

    func testEarlyResetIsReplayedToo() {
        var m = M(sendWindow: 10, receiveWindow: 10)
        _ = m.tunnelReceived(data("ab"))
        XCTAssertEqual(m.tunnelReceived(reset(.refused)), .succeeded(.none))
        guard case .replay(let frames, 2) = m.socketJoined() else { return XCTFail("no replay") }
        XCTAssertEqual(m.tunnelReceived(frames[0]), .succeeded(.writeToSocket(bytes("ab"))))
        XCTAssertEqual(m.tunnelReceived(frames[1]), .succeeded(end(.none, .abort, .resetByPeer(.refused))))
    }

    func testEarlyDataIsBoundedByOurWindow() {
        var m = M(sendWindow: 10, receiveWindow: 10)
        XCTAssertEqual(m.tunnelReceived(data(bytes(count: 6))), .succeeded(.reserveBuffer(6)))
        XCTAssertEqual(m.tunnelReceived(data(bytes(count: 4))), .succeeded(.reserveBuffer(4)))
        XCTAssertEqual(m.tunnelReceived(data("x")), violation(.dataBeyondWindowBeforeReady(bytes: 1), release: 10))
        assertInert(m)
        XCTAssertEqual(m.socketJoined(), .closeSocket(.abort), "a socket that comes after the end is reset")
    }

    func testEarlyDataPastTheSessionBudgetResetsAndReleasesOnlyWhatWasTaken() {
        var m = M(sendWindow: 10, receiveWindow: 100)
        XCTAssertEqual(m.tunnelReceived(data(bytes(count: 4))), .succeeded(.reserveBuffer(4)))
        XCTAssertEqual(m.tunnelReceived(data(bytes(count: 3))), .succeeded(.reserveBuffer(3)))
        XCTAssertEqual(m.earlyBufferedBytes, 7)
        XCTAssertEqual(m.bufferReserveFailed(), end(.reset(.limitExceeded), .abort, .sessionBufferFullBeforeReady, release: 4))
        assertInert(m)
    }

    func testConsecutiveEarlyDataIsJoinedIntoOneFrame() {
        var m = M(sendWindow: 10, receiveWindow: 1000)
        for i in 0..<300 { XCTAssertEqual(m.tunnelReceived(data("\(i % 10)")), .succeeded(.reserveBuffer(1))) }
        XCTAssertEqual(m.earlyFrameCount, 1, "300 one-byte DATA take one place")
        XCTAssertEqual(m.earlyBufferedBytes, 300)
        XCTAssertEqual(m.tunnelReceived(window(5)), .succeeded(.none))
        XCTAssertEqual(m.tunnelReceived(data("z")), .succeeded(.reserveBuffer(1)))
        let expected = (0..<300).map { "\($0 % 10)" }.joined()
        XCTAssertEqual(m.socketJoined(), .replay([data(expected), window(5), data("z")], releaseBuffer: 301))
    }

    func testEarlyFramesAreBoundedInNumber() {
        var m = M(sendWindow: 10, receiveWindow: 1000)
        for _ in 0..<M.maxEarlyFrames { XCTAssertEqual(m.tunnelReceived(window(1)), .succeeded(.none)) }
        XCTAssertEqual(m.earlyFrameCount, M.maxEarlyFrames)
        XCTAssertEqual(m.tunnelReceived(window(1)), violation(.tooManyFramesBeforeReady(M.maxEarlyFrames)))
        assertInert(m)

        // DATA between WINDOWs cannot be joined: it counts like any frame, and what it took is released.
        var d = M(sendWindow: 10, receiveWindow: 1000)
        for i in 0..<M.maxEarlyFrames {
            let frame = i % 2 == 0 ? data("x") : window(1)
            XCTAssertEqual(d.tunnelReceived(frame), .succeeded(i % 2 == 0 ? .reserveBuffer(1) : .none))
        }
        XCTAssertEqual(
            d.tunnelReceived(data("y")),
            violation(.tooManyFramesBeforeReady(M.maxEarlyFrames), release: M.maxEarlyFrames / 2))
        XCTAssertEqual(M.maxEarlyFrames, 64)
    }

    func testEmptyDataIsNeverWrittenNorKept() {
        var m = M(sendWindow: 10, receiveWindow: 100)
        for _ in 0..<10_000 { XCTAssertEqual(m.tunnelReceived(data("")), .succeeded(.none)) }
        XCTAssertEqual(m.earlyFrameCount, 0, "an empty DATA before the socket joins is not kept")
        XCTAssertEqual(m.socketJoined(), .replay([], releaseBuffer: 0))
        for _ in 0..<10_000 { XCTAssertEqual(m.tunnelReceived(data("")), .succeeded(.none), "no write queued per empty DATA") }
        XCTAssertEqual(m.tunnelReceived(data("a")), .succeeded(.writeToSocket(bytes("a"))))
        XCTAssertEqual(m.tunnelReceived(finished), .succeeded(.shutdownOutput))
        XCTAssertEqual(m.tunnelReceived(data("")), violation(.dataAfterFinished), "after FINISHED even an empty DATA breaks the rule")

        var early = M(sendWindow: 10, receiveWindow: 100)
        _ = early.tunnelReceived(finished)
        XCTAssertEqual(early.tunnelReceived(data("")), .succeeded(.reserveBuffer(0)), "kept: its replay resets the port")
        guard case .replay(let frames, 0) = early.socketJoined() else { return XCTFail("no replay") }
        XCTAssertEqual(frames.count, 2)
        XCTAssertEqual(early.tunnelReceived(frames[0]), .succeeded(.shutdownOutput))
        XCTAssertEqual(early.tunnelReceived(frames[1]), violation(.dataAfterFinished))
    }

    func testThePortEndingBeforeItsSocketJoins() {
        var m = M(sendWindow: 10, receiveWindow: 100)
        _ = m.tunnelReceived(data("abc"))
        XCTAssertEqual(m.tunnelClosed(), end(.none, .abort, .tunnelClosed, release: 3))
        XCTAssertEqual(m.socketJoined(), .closeSocket(.abort))

        var c = M(sendWindow: 10, receiveWindow: 100)
        XCTAssertEqual(c.closeByRequest(), end(.none, .now, .closedByRequest))
        XCTAssertEqual(c.socketJoined(), .closeSocket(.now), "closed by request: a normal close")

        var r = M(sendWindow: 10, receiveWindow: 100)
        XCTAssertEqual(r.reset(.refused, reason: .aborted("connect failed")), end(.reset(.refused), .abort, .aborted("connect failed")))
        XCTAssertEqual(r.socketJoined(), .closeSocket(.abort))
    }

    // MARK: - A long random walk against the rules

    /// Random inputs in random order; the rules, stated apart from the implementation, hold at
    /// every step: bytes reach the tunnel in order and within credit, FINISHED follows every byte,
    /// the port ends once, and nothing happens after.
    func testRandomInputsKeepTheRules() {
        var rng = SeededGenerator(seed: 0x5EED)
        var ends = 0
        for run in 0..<400 {
            let initialCredit = Int.random(in: 0...40, using: &rng)
            let ourWindow = Int.random(in: 1...40, using: &rng)
            var m = M(sendWindow: UInt32(initialCredit), receiveWindow: UInt32(ourWindow))
            var readText = ""  // what the socket delivered
            var sentText = ""  // what went out as DATA
            var granted = 0
            var finishedSent = false
            var ended = false
            var eof = false
            var next: UInt8 = 0
            var writesInFlight: [Int] = []
            func apply(_ a: StreamPortAction, _ step: Int) {
                switch a {
                case .end(let e):
                    XCTAssertFalse(ended, "run \(run) step \(step): ended twice")
                    ended = true
                    if e.lastFrame == .finished {
                        XCTAssertFalse(finishedSent, "run \(run) step \(step)")
                        finishedSent = true
                        XCTAssertEqual(sentText, readText, "run \(run) step \(step): FINISHED before every byte")
                    }
                case .sendFinished:
                    XCTAssertFalse(finishedSent, "run \(run) step \(step): FINISHED twice")
                    finishedSent = true
                    XCTAssertEqual(sentText, readText, "run \(run) step \(step): FINISHED before every byte")
                case .writeToSocket(let b):
                    XCTAssertTrue(m.phase == .joined, "run \(run) step \(step): write without a socket")
                    writesInFlight.append(b.readableBytes)
                case .sendHeld, .resume:
                    for out in drain(&m, writable: Bool.random(using: &rng), maxPayload: Int.random(in: 1...9, using: &rng)) {
                        if case .data(let b) = out { sentText += String(buffer: b) }
                        if case .then(let then) = out { apply(then, step) }
                    }
                default:
                    break
                }
            }
            func take(_ r: StreamPortResult) -> StreamPortAction {
                switch r {
                case .succeeded(let a): return a
                case .streamError(_, let a): return a
                case .ignored:
                    XCTAssertTrue(ended, "run \(run): a frame ignored by a live port")
                    return .none
                case .sessionError:
                    XCTFail("no port rule ends the session")
                    return .none
                }
            }
            var socketGone = false
            XCTAssertEqual(m.socketJoined(), .replay([], releaseBuffer: 0))
            for step in 0..<60 {
                let wasEnded = ended
                var action = StreamPortAction.none
                switch Int.random(in: 0..<12, using: &rng) {
                case 0, 1:
                    guard !eof, !socketGone else { break }
                    let n = Int.random(in: 0...12, using: &rng)
                    var text = ""
                    for _ in 0..<n {
                        text.append(Character(UnicodeScalar(UInt8(0x41) + next % 26)))
                        next &+= 1
                    }
                    if !ended { readText += text }
                    action = m.socketRead(ByteBuffer(string: text))
                case 2:
                    let inc = UInt32.random(in: 1...30, using: &rng)
                    if !ended { granted += Int(inc) }
                    action = take(m.tunnelReceived(window(inc)))
                case 3: action = m.tunnelBecameWritable()
                case 4:
                    guard !eof, !socketGone, Int.random(in: 0..<4, using: &rng) == 0 else { break }
                    eof = true
                    action = m.socketInputClosed()
                case 5:
                    action = take(m.tunnelReceived(data(bytes(count: Int.random(in: 0...10, using: &rng)))))
                case 6:
                    guard !writesInFlight.isEmpty else { break }
                    action = m.socketWriteCompleted(writesInFlight.removeFirst(), succeeded: !socketGone)
                case 7:
                    guard Int.random(in: 0..<6, using: &rng) == 0 else { break }
                    action = take(m.tunnelReceived(finished))
                case 8:
                    guard !socketGone, Int.random(in: 0..<20, using: &rng) == 0 else { break }
                    socketGone = true
                    action = m.socketClosed()
                case 9:
                    guard Int.random(in: 0..<30, using: &rng) == 0 else { break }
                    action = m.tunnelClosed()
                case 10:
                    guard !socketGone, Int.random(in: 0..<30, using: &rng) == 0 else { break }
                    socketGone = true
                    action = m.socketFailed(.connectionReset, "e")
                default:
                    let expected = !ended && !socketGone && m.heldBytes == 0 && !eof && m.sendWindow.credit > 0
                    XCTAssertEqual(m.readDecision(tunnelWritable: true) == .read, expected, "run \(run) step \(step)")
                }
                apply(action, step)
                if wasEnded { XCTAssertEqual(action, .none, "run \(run) step \(step): acted after the end") }
                XCTAssertEqual(m.phase == .released, ended, "run \(run) step \(step)")
                if !ended {
                    XCTAssertEqual(m.sendWindow.credit, initialCredit + granted - Int(m.bytesToTunnel), "run \(run) step \(step): credit")
                    XCTAssertEqual(m.bytesToTunnel, UInt64(sentText.utf8.count), "run \(run) step \(step)")
                    XCTAssertTrue(readText.hasPrefix(sentText), "run \(run) step \(step): bytes out of order")
                    XCTAssertEqual(m.heldBytes, readText.utf8.count - sentText.utf8.count, "run \(run) step \(step): bytes lost")
                }
            }
            if ended { ends += 1 }
        }
        XCTAssertGreaterThan(ends, 50, "the walk reached the end of ports")
        XCTAssertLessThan(ends, 400, "the walk kept some ports open")
    }
}

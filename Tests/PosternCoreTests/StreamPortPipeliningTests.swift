import NIOCore
import PosternCore
import PosternWire
import XCTest

/// Both ends of a pipelined CONNECT (docs/protocol.md §5.3) as `StreamPortStateMachine` sees them:
/// the server's, which sends before DONE and keeps what it sent for a retry, and the mediator's,
/// which keeps what arrives while it connects.
final class StreamPortPipeliningTests: XCTestCase {
    typealias M = StreamPortStateMachine

    private func bytes(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
    private func data(_ text: String) -> Frame { .data(.init(portID: 7, bytes: bytes(text))) }
    private func data(count: Int) -> Frame { .data(.init(portID: 7, bytes: ByteBuffer(repeating: 0x61, count: count))) }
    private let finished = Frame.finished(.init(portID: 7))
    private func window(_ n: UInt32) -> Frame { .window(.init(portID: 7, increment: n)) }
    private func reset(_ code: ErrorCode) -> Frame { .reset(.init(portID: 7, code: code)) }

    private func end(
        _ last: StreamPortAction.LastFrame, _ socket: StreamPortAction.SocketClose, _ reason: StreamPortEnd, release: Int = 0
    ) -> StreamPortAction {
        .end(.init(lastFrame: last, socket: socket, reason: reason, releaseBuffer: release))
    }

    private func drain(_ m: inout M, maxPayload: Int = 1 << 20) -> [M.Outbound] {
        var out: [M.Outbound] = []
        while true {
            let next = m.nextOutbound(tunnelWritable: true, maxPayload: maxPayload)
            out.append(next)
            guard case .data = next, out.count < 1000 else { return out }
        }
    }

    private func texts(_ out: [M.Outbound]) -> [String] {
        out.compactMap { if case .data(let b) = $0 { return String(buffer: b) } else { return nil } }
    }

    /// The server's end, joined to the user's socket as the CONNECT goes out.
    private func server(send: UInt32 = 10) -> M {
        var m = M(sendWindow: send, receiveWindow: 100, pipelining: .sendsBeforeDone)
        XCTAssertEqual(m.socketJoined(), .replay([], releaseBuffer: 0))
        return m
    }

    // MARK: - Server end

    func testTheUsersBytesGoOutBeforeDoneWithinThePeersInitialWindow() {
        var m = server(send: 10)
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .read, "read at once: no DONE needed")
        XCTAssertEqual(m.socketRead(bytes("GET / HTTP/1.1")), .sendHeld)
        XCTAssertEqual(texts(drain(&m)), ["GET / HTTP"], "at most the initial window")
        XCTAssertEqual(m.sendWindow.credit, 0)
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .none)
        XCTAssertTrue(m.isUnconfirmed)
        XCTAssertEqual(m.unconfirmedBytes, 10)
        m.connectConfirmed()
        XCTAssertFalse(m.isUnconfirmed)
        XCTAssertEqual(m.unconfirmedBytes, 0, "nothing kept once DONE came")
        XCTAssertEqual(m.tunnelReceived(window(4)), .succeeded(.resume))
        XCTAssertEqual(texts(drain(&m)), ["/1.1"])
        XCTAssertEqual(m.bytesToTunnel, 14)
    }

    func testAFinBeforeDoneGoesOutBehindTheBytes() {
        var m = server(send: 100)
        _ = m.socketRead(bytes("ping"))
        XCTAssertEqual(m.socketInputClosed(), .none, "held bytes first")
        XCTAssertEqual(drain(&m), [.data(bytes("ping")), .then(.sendFinished)])
        XCTAssertTrue(m.halves.sentFin)
    }

    func testARefusalForLimitsPutsTheSentBytesAndTheFinBackAndPausesUntilTheRetry() {
        var m = server(send: 6)
        _ = m.socketRead(bytes("abcd"))
        XCTAssertEqual(texts(drain(&m)), ["abcd"])
        _ = m.socketRead(bytes("efgh"))
        XCTAssertEqual(texts(drain(&m)), ["ef"], "credit ran out: gh held")
        m.connectRefusedForRetry()
        XCTAssertTrue(m.isPaused)
        XCTAssertEqual(m.bytesToTunnel, 0, "nothing counts as sent")
        XCTAssertEqual(m.sendWindow.credit, 6, "the new id starts with the whole window")
        XCTAssertEqual(drain(&m), [.idle], "nothing goes out while paused")
        XCTAssertEqual(m.readDecision(tunnelWritable: true), .none)
        XCTAssertEqual(m.socketInputClosed(), .none, "a FIN while paused waits too")
        XCTAssertEqual(m.connectRetried(), .resume)
        XCTAssertEqual(m.connectRetried(), .none, "once")
        XCTAssertEqual(texts(drain(&m)), ["abcd", "ef"], "the same bytes again, in order, within the new window")
        XCTAssertEqual(m.tunnelReceived(window(10)), .succeeded(.resume), "no DONE yet: a WINDOW is still this port's")
        XCTAssertEqual(drain(&m), [.data(bytes("gh")), .then(.sendFinished)])
        XCTAssertEqual(m.unconfirmedBytes, 8)
    }

    func testARefusalAfterTheFinWentOutSendsItAgain() {
        var m = server(send: 100)
        _ = m.socketRead(bytes("q"))
        _ = m.socketInputClosed()
        XCTAssertEqual(drain(&m), [.data(bytes("q")), .then(.sendFinished)])
        m.connectRefusedForRetry()
        XCTAssertFalse(m.halves.sentFin, "our FIN never reached a port")
        XCTAssertTrue(m.isEOFPending)
        XCTAssertEqual(m.connectRetried(), .resume)
        XCTAssertEqual(drain(&m), [.data(bytes("q")), .then(.sendFinished)])
    }

    func testAPausedPortThatEndsSendsNothingForTheOldID() {
        var m = server()
        _ = m.socketRead(bytes("x"))
        _ = drain(&m)
        m.connectRefusedForRetry()
        XCTAssertEqual(m.socketClosed(), end(.none, .abort, .socketClosed), "the user left: no RESET for an id the mediator never had")
        XCTAssertEqual(m.connectRetried(), .none)
        XCTAssertEqual(m.phase, .released)
    }

    func testAbandonSendsNothingAndAbortsTheSocket() {
        var m = server()
        _ = m.socketRead(bytes("x"))
        _ = drain(&m)
        XCTAssertEqual(m.abandon(reason: .aborted("refused")), end(.none, .abort, .aborted("refused")))
        XCTAssertEqual(m.abandon(reason: .aborted("again")), .none)
        XCTAssertEqual(m.unconfirmedBytes, 0)
    }

    func testAnUnpipelinedPortKeepsNothing() {
        var m = M(sendWindow: 10, receiveWindow: 10)
        _ = m.socketJoined()
        _ = m.socketRead(bytes("abc"))
        _ = drain(&m)
        XCTAssertFalse(m.isUnconfirmed)
        m.connectRefusedForRetry()
        XCTAssertFalse(m.isPaused, "only a pipelined port can be sent again")
        XCTAssertEqual(m.bytesToTunnel, 3)
    }

    // MARK: - Mediator end, while connecting

    func testWhileConnectingDataAndFinAreKeptAndReplayedOnceConnected() {
        var m = M(sendWindow: 100, receiveWindow: 10, pipelining: .connectingHere)
        XCTAssertEqual(m.tunnelReceived(data("abc")), .succeeded(.reserveBuffer(3)))
        XCTAssertEqual(m.tunnelReceived(data("de")), .succeeded(.reserveBuffer(2)))
        XCTAssertEqual(m.tunnelReceived(finished), .succeeded(.none))
        XCTAssertEqual(m.socketJoined(), .replay([data("abcde"), finished], releaseBuffer: 5))
    }

    func testDataBeyondTheWindowWhileConnectingResetsAndNothingIsWritten() {
        var m = M(sendWindow: 100, receiveWindow: 10, pipelining: .connectingHere)
        XCTAssertEqual(m.tunnelReceived(data(count: 8)), .succeeded(.reserveBuffer(8)))
        let v = StreamPortViolation.dataBeyondWindowBeforeReady(bytes: 3)
        XCTAssertEqual(
            m.tunnelReceived(data(count: 3)), .streamError(v, then: end(.reset(.protocolError), .abort, .violation(v), release: 8)))
        XCTAssertEqual(m.socketJoined(), .closeSocket(.abort), "the socket that connects later is aborted, nothing written")
    }

    func testMoreThan64FramesWhileConnectingResets() {
        var m = M(sendWindow: 100, receiveWindow: 1000, pipelining: .connectingHere)
        for _ in 0..<M.maxEarlyFrames { _ = m.tunnelReceived(window(1)) }
        let v = StreamPortViolation.tooManyFramesBeforeReady(M.maxEarlyFrames)
        XCTAssertEqual(m.tunnelReceived(window(1)), .streamError(v, then: end(.reset(.protocolError), .abort, .violation(v))))
    }

    func testAResetWhileConnectingEndsThePortAtOnce() {
        var m = M(sendWindow: 100, receiveWindow: 10, pipelining: .connectingHere)
        _ = m.tunnelReceived(data("abc"))
        XCTAssertEqual(
            m.tunnelReceived(reset(.connectionReset)), .succeeded(end(.none, .abort, .resetByPeer(.connectionReset), release: 3)),
            "released now, budget back, no RESET answered")
        XCTAssertEqual(m.phase, .released)
        XCTAssertEqual(m.socketJoined(), .closeSocket(.abort))
    }

    func testAConnectThatFailsDropsWhatWasKept() {
        var m = M(sendWindow: 100, receiveWindow: 10, pipelining: .connectingHere)
        _ = m.tunnelReceived(data("secret"))
        XCTAssertEqual(m.abandon(reason: .aborted("connect failed")), end(.none, .abort, .aborted("connect failed"), release: 6))
        XCTAssertEqual(m.earlyBufferedBytes, 0)
        XCTAssertEqual(m.tunnelReceived(data("more")), .ignored, "later frames for the id are dropped")
    }

    func testAnAcceptedPortStillReplaysAnEarlyReset() {
        var m = M(sendWindow: 10, receiveWindow: 10)
        XCTAssertEqual(m.tunnelReceived(reset(.refused)), .succeeded(.none), "the old rule for ports awaiting their socket")
        XCTAssertEqual(m.socketJoined(), .replay([reset(.refused)], releaseBuffer: 0))
    }
}

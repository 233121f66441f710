import NIOCore
import PosternCore
import PosternWire
import XCTest

/// The UDP channel machine of docs/protocol.md §9.7-§9.9, a server's and a mediator's against each other
/// over real sealed bytes, on an injected clock.
final class UDPChannelStateMachineTests: XCTestCase {
    typealias F = Fixture
    typealias Machine = UDPChannelStateMachine<String>
    typealias Action = Machine.Action

    static let interval = TimeAmount.seconds(15)
    static let dead = TimeAmount.seconds(45)

    /// Both ends of one channel and the network between them: the mediator's datagrams leave from
    /// `mediatorSource` (its NAT mapping); the server's reach the mediator only when sent there.
    struct Pair {
        var server: Machine
        var mediator: Machine
        var now: NIODeadline
        var mediatorSource = "M1"
        var blocked = false
        var duplicate = false
        /// The server's datagrams are lost (the mediator's still arrive).
        var serverToMediatorLost = false
        /// The mediator's datagrams are lost (the server's still arrive): a gateway dropping UDP to
        /// the service port.
        var mediatorToServerLost = false
        /// Every n-th datagram sent (either way) is lost; 0: none.
        var loseEvery = 0
        private var sentCount = 0
        var serverEvents: [(NIODeadline, Action)] = []
        var mediatorEvents: [(NIODeadline, Action)] = []
        var serverDelivered: [UDPChannelMessage] = []
        var mediatorDelivered: [UDPChannelMessage] = []
        /// Every datagram the mediator sent, when.
        var wire: [(NIODeadline, ByteBuffer)] = []
        private var queue: [(toServer: Bool, bytes: ByteBuffer)] = []

        init(now: NIODeadline = F.t0, mediatorCounter: UDPChannelCounter = .init()) {
            let settings = UDPChannelSettings(keepaliveInterval: interval, deadTimeout: dead)
            server = Machine(
                role: .server, channelID: 0, sessionID: F.sessionID, keys: F.keys(.server), settings: settings, peerAddress: nil, now: now)
            mediator = Machine(
                role: .mediator, channelID: 0, sessionID: F.sessionID, keys: F.keys(.mediator), settings: settings, peerAddress: "S",
                now: now, counter: mediatorCounter)
            self.now = now
        }

        mutating func perform(_ actions: [Action], fromMediator: Bool) {
            for action in actions {
                switch action {
                case .send(let bytes, let to):
                    sentCount += 1
                    if loseEvery > 0, sentCount % loseEvery == 0 { continue }
                    if fromMediator {
                        XCTAssertEqual(to, "S")
                        wire.append((now, bytes))
                        if !blocked, !mediatorToServerLost { queue.append((true, bytes)) }
                    } else if !blocked, !serverToMediatorLost, to == mediatorSource {
                        queue.append((false, bytes))
                    }
                    if duplicate, !blocked, let last = queue.last { queue.append(last) }
                case .deliver(let m):
                    if fromMediator { mediatorDelivered.append(m) } else { serverDelivered.append(m) }
                default:
                    if fromMediator { mediatorEvents.append((now, action)) } else { serverEvents.append((now, action)) }
                }
            }
        }

        mutating func pump() {
            while !queue.isEmpty {
                let (toServer, bytes) = queue.removeFirst()
                if toServer {
                    perform(server.receive(bytes, from: mediatorSource, now: now), fromMediator: false)
                } else {
                    perform(mediator.receive(bytes, from: "S", now: now), fromMediator: true)
                }
            }
        }

        mutating func tick() {
            perform(mediator.tick(now: now), fromMediator: true)
            perform(server.tick(now: now), fromMediator: false)
            pump()
        }

        /// Runs both machines' deadlines up to `end`.
        mutating func advance(by amount: TimeAmount) {
            let end = now + amount
            while true {
                let next = min(server.nextDeadline, mediator.nextDeadline)
                guard next <= end else { break }
                now = max(now, next)
                tick()
            }
            now = end
            tick()
        }

        mutating func offer(_ m: UDPChannelMessage, fromMediator: Bool = true) -> Bool {
            let result = fromMediator ? mediator.seal(m, now: now) : server.seal(m, now: now)
            guard case .send(let bytes, let to) = result else { return false }
            perform([.send(bytes, to: to)], fromMediator: fromMediator)
            // As the I/O does: a seal that asks for a probe is followed by a tick.
            if fromMediator ? mediator.probeDue : server.probeDue { tick() }
            pump()
            return true
        }
    }

    static func datagram(_ n: UInt8) -> UDPChannelMessage {
        .datagram(portID: 3, peer: Endpoint(parsing: "192.168.77.53:53")!, bytes: ByteBuffer(bytes: [n]))
    }

    private func up() -> Pair {
        var p = Pair()
        p.tick()
        return p
    }

    func testComesUpAtOnceBothWays() {
        var p = Pair()
        XCTAssertEqual(p.mediator.seal(Self.datagram(0), now: p.now), .notUp, "nothing goes on a channel not yet up")
        p.tick()
        XCTAssertEqual(p.mediatorEvents.map(\.1), [.up])
        XCTAssertEqual(p.serverEvents.map(\.1), [.migrated(from: nil, to: "M1"), .up])
        XCTAssertTrue(p.server.isUp && p.mediator.isUp)
        XCTAssertEqual(p.server.peerAddress, "M1")
        XCTAssertEqual(p.server.counters.migrations, 0, "learning the first address is not a move")
    }

    /// A server that hears the mediator but is not heard back (its datagrams are lost) never goes up.
    func testOneWayIsNotUp() {
        var p = Pair()
        p.serverToMediatorLost = true
        p.advance(by: .seconds(100))
        XCTAssertFalse(p.mediator.isUp)
        XCTAssertFalse(p.server.isUp, "the mediator's PINGs say it hears nothing")
        XCTAssertTrue(p.server.isHearing(at: p.now))
        XCTAssertTrue(p.serverEvents.allSatisfy { if case .up = $0.1 { return false } else { return true } })
    }

    func testDatagramsFlowBothWays() {
        var p = up()
        XCTAssertTrue(p.offer(Self.datagram(1)))
        XCTAssertTrue(p.offer(Self.datagram(2), fromMediator: false))
        XCTAssertEqual(p.serverDelivered, [Self.datagram(1)])
        XCTAssertEqual(p.mediatorDelivered, [Self.datagram(2)])
        XCTAssertEqual(p.server.counters.delivered, 1)
        XCTAssertEqual(p.server.counters.dropped, 0)
        XCTAssertTrue(p.offer(.packet(ByteBuffer(bytes: [0x45]))))
        XCTAssertEqual(p.serverDelivered.last, .packet(ByteBuffer(bytes: [0x45])))
    }

    /// Idle for ten minutes: a datagram from the mediator at least every keepalive interval (the NAT
    /// mapping stays), and the channel never goes down.
    func testKeepalivesKeepAnIdleChannelUp() {
        var p = up()
        p.advance(by: .minutes(10))
        let times = p.wire.map(\.0)
        for (a, b) in zip(times, times.dropFirst()) { XCTAssertLessThanOrEqual(b - a, Self.interval) }
        XCTAssertGreaterThanOrEqual(times.count, 40)
        XCTAssertLessThanOrEqual(p.now - times.last!, Self.interval)
        XCTAssertEqual(p.mediatorEvents.map(\.1), [.up])
        XCTAssertTrue(p.server.isUp && p.mediator.isUp)
        XCTAssertEqual(p.server.counters.dropped, 0)
        XCTAssertGreaterThanOrEqual(p.server.counters.keepalivesSent, 40, "the server pings too")
    }

    /// UDP blocked: each end goes down once its next keepalive is unanswered for the answer timeout
    /// with nothing heard (not only after the dead timeout), and datagrams go on the TCP channel;
    /// unblocked: both are back up within one keepalive interval.
    func testFallbackAndRecovery() throws {
        var p = up()
        p.advance(by: .seconds(20))
        let blocked = p.now
        p.blocked = true
        p.advance(by: .seconds(120))
        let firstPing = try XCTUnwrap(p.wire.first { $0.0 > blocked }?.0)
        let downs = p.mediatorEvents.filter { $0.1 == .down }
        XCTAssertEqual(downs.count, 1)
        XCTAssertEqual(downs.first?.0, firstPing + p.mediator.settings.answerTimeout, "down when its keepalive is unanswered")
        XCTAssertLessThan(downs.first!.0 - blocked, Self.interval + .seconds(5), "well before the dead timeout")
        XCTAssertEqual(p.serverEvents.filter { $0.1 == .down }.count, 1)
        XCTAssertEqual(p.mediator.seal(Self.datagram(9), now: p.now), .notUp)
        XCTAssertEqual(p.server.seal(Self.datagram(9), now: p.now), .notUp)

        let unblocked = p.now
        p.blocked = false
        p.advance(by: Self.interval)
        let ups = p.mediatorEvents.filter { $0.1 == .up }
        XCTAssertEqual(ups.count, 2)
        XCTAssertLessThanOrEqual(ups[1].0 - unblocked, Self.interval)
        XCTAssertTrue(p.server.isUp && p.mediator.isUp)
        XCTAssertTrue(p.offer(Self.datagram(3)))
        XCTAssertEqual(p.serverDelivered, [Self.datagram(3)])
    }

    /// The gateway starts dropping the mediator's datagrams while the server's still arrive (UDP to
    /// the service port blocked): the server's next datagram finds it silent, a probe goes unanswered,
    /// and within the answer timeout both ends are down (the server's PING tells the mediator, which
    /// still hears it) and datagrams take the TCP channel; the dead timeout (45 s) is not waited for.
    func testOneWayBlockIsNoticedWithinTheAnswerTimeout() throws {
        var p = up()
        p.advance(by: .seconds(5))
        p.mediatorToServerLost = true
        let blocked = p.now
        p.advance(by: .seconds(2))
        XCTAssertTrue(p.offer(Self.datagram(1), fromMediator: false), "the server still thinks it is up")
        XCTAssertFalse(p.server.probeDue, "the probe went out with the seal's tick")
        p.advance(by: .seconds(5))
        let serverDown = try XCTUnwrap(p.serverEvents.first { $0.1 == .down }?.0)
        let mediatorDown = try XCTUnwrap(p.mediatorEvents.first { $0.1 == .down }?.0)
        XCTAssertLessThanOrEqual(serverDown - blocked, .seconds(2) + p.server.settings.answerTimeout)
        XCTAssertEqual(mediatorDown, serverDown, "told at once by the server's PING")
        XCTAssertEqual(p.server.seal(Self.datagram(2), now: p.now), .notUp)
        XCTAssertEqual(p.mediator.seal(Self.datagram(2), now: p.now), .notUp)
        // Unblocked: back up within one keepalive interval.
        p.mediatorToServerLost = false
        p.advance(by: Self.interval)
        XCTAssertTrue(p.server.isUp && p.mediator.isUp)
    }

    /// A busy path that loses datagrams (PINGs and PONGs among them) is not silent: while the peer is
    /// heard, unanswered PINGs do not take the channel down.
    func testALossyBusyPathStaysUp() {
        var p = up()
        p.advance(by: .seconds(5))
        p.loseEvery = 2
        for i in 0..<100 {
            _ = p.offer(Self.datagram(UInt8(i)))
            _ = p.offer(Self.datagram(UInt8(i)), fromMediator: false)
            p.advance(by: .milliseconds(100))
        }
        XCTAssertTrue(p.server.isUp && p.mediator.isUp)
        XCTAssertEqual(p.serverEvents.filter { $0.1 == .down }.count, 0)
        XCTAssertEqual(p.mediatorEvents.filter { $0.1 == .down }.count, 0)
        XCTAssertGreaterThan(p.server.counters.delivered, 20)
    }

    /// A one-way flood where the receiving end's socket drops most datagrams (PINGs among them): the
    /// receiving end, which hears the flood, PINGs back every probe interval, so the sending end is
    /// never silent about it and the channel stays up.
    func testAOneWayFloodIntoALossyReceiverStaysUp() {
        var p = up()
        p.advance(by: .seconds(5))
        var n = 0
        for i in 0..<300 {
            // Only every 8th of the server's datagrams arrives: the mediator's socket overflows.
            p.serverToMediatorLost = i % 8 != 0
            for _ in 0..<3 {
                _ = p.offer(Self.datagram(UInt8(truncatingIfNeeded: n)), fromMediator: false)
                n += 1
            }
            p.serverToMediatorLost = true
            p.advance(by: .milliseconds(50))
        }
        XCTAssertEqual(p.serverEvents.filter { $0.1 == .down }.count, 0, "the server went down: \(p.serverEvents)")
        XCTAssertTrue(p.server.isUp)
        XCTAssertGreaterThan(p.mediatorDelivered.count, 50)
    }

    /// The gateway reboots and maps the mediator to a new public port: the server follows its next
    /// authenticated datagram, within one keepalive, and answers reach the mediator again.
    func testServerFollowsTheMediatorsNewAddress() {
        var p = up()
        p.advance(by: .seconds(7))
        let moved = p.now
        p.mediatorSource = "M2"
        p.advance(by: Self.interval)
        let migration = p.serverEvents.first { if case .migrated(from: "M1", to: "M2") = $0.1 { return true } else { return false } }
        XCTAssertNotNil(migration)
        XCTAssertLessThanOrEqual(migration!.0 - moved, Self.interval)
        XCTAssertEqual(p.server.peerAddress, "M2")
        XCTAssertEqual(p.server.counters.migrations, 1)
        XCTAssertTrue(p.offer(Self.datagram(4), fromMediator: false))
        XCTAssertEqual(p.mediatorDelivered, [Self.datagram(4)])
        XCTAssertTrue(p.server.isUp && p.mediator.isUp)
    }

    /// Captured datagrams replayed, from the mediator's address or another: counted, not delivered,
    /// and the session's address does not move.
    func testReplaysAreDroppedAndNeverMoveTheAddress() {
        var p = up()
        XCTAssertTrue(p.offer(Self.datagram(5)))
        let captured = p.wire.map(\.1)
        for source in ["M1", "X"] {
            for bytes in captured {
                XCTAssertEqual(p.server.receive(bytes, from: source, now: p.now), [])
            }
        }
        XCTAssertEqual(p.server.counters.replayed, UInt64(2 * captured.count))
        XCTAssertEqual(p.server.peerAddress, "M1")
        XCTAssertEqual(p.serverDelivered, [Self.datagram(5)])
        XCTAssertEqual(p.server.counters.migrations, 0)
    }

    /// Forged datagrams with a valid header and a newer counter, from another address: counted,
    /// dropped, and they neither move the address nor the replay window.
    func testForgeriesNeverMoveTheAddressOrTheWindow() throws {
        var p = up()
        let forger = UDPChannelCipher(keys: F.keys(.mediator, sessionID: F.sessionID + 1), sessionID: F.sessionID)
        var forged = try XCTUnwrap(forger.seal(Self.datagram(6), channelID: 0, counter: 1_000))
        XCTAssertEqual(p.server.receive(forged, from: "X", now: p.now), [])
        var bytes = p.wire.last!.1.readableByteArray
        bytes[19] = 0xff  // a newer counter on a real datagram
        forged = ByteBuffer(bytes: bytes)
        XCTAssertEqual(p.server.receive(forged, from: "X", now: p.now), [])
        XCTAssertEqual(p.server.counters.forged, 2)
        XCTAssertEqual(p.server.peerAddress, "M1")
        // The window did not move to 1,000 or 255: the mediator's next counters still open.
        XCTAssertTrue(p.offer(Self.datagram(7)))
        XCTAssertEqual(p.serverDelivered, [Self.datagram(7)])
    }

    /// A datagram that is authentic and fresh but not the newest (reordered) is delivered from any
    /// address, but only the newest moves the address.
    func testOnlyTheNewestDatagramMovesTheAddress() throws {
        var p = up()
        p.blocked = true
        XCTAssertTrue(p.offer(Self.datagram(1)))
        XCTAssertTrue(p.offer(Self.datagram(2)))
        p.blocked = false
        let (older, newer) = (p.wire[p.wire.count - 2].1, p.wire[p.wire.count - 1].1)
        XCTAssertEqual(p.server.receive(newer, from: "M2", now: p.now), [.migrated(from: "M1", to: "M2"), .deliver(Self.datagram(2))])
        XCTAssertEqual(p.server.receive(older, from: "M1", now: p.now), [.deliver(Self.datagram(1))])
        XCTAssertEqual(p.server.peerAddress, "M2")
    }

    func testTheMediatorOnlyTakesTheServersDatagrams() throws {
        var p = up()
        let server = UDPChannelCipher(keys: F.keys(.server), sessionID: F.sessionID)
        let genuine = try XCTUnwrap(server.seal(Self.datagram(8), channelID: 0, counter: 999))
        XCTAssertEqual(p.mediator.receive(genuine, from: "X", now: p.now), [], "from another address")
        XCTAssertEqual(p.mediator.counters.stray, 1)
        // Its own kind of datagram reflected back at it, with a counter the window has not seen: sealed
        // under the other direction's key, it does not open.
        let reflected = try XCTUnwrap(
            UDPChannelCipher(keys: F.keys(.mediator), sessionID: F.sessionID).seal(Self.datagram(8), channelID: 0, counter: 5_000))
        XCTAssertEqual(p.mediator.receive(reflected, from: "S", now: p.now), [])
        XCTAssertEqual(p.mediator.counters.forged, 1)
        // A real one of its own, replayed at it, is refused before decryption by the window.
        XCTAssertEqual(p.mediator.receive(p.wire.last!.1, from: "S", now: p.now), [])
        XCTAssertEqual(p.mediator.counters.replayed, 1)
        XCTAssertEqual(p.mediator.receive(genuine, from: "S", now: p.now), [.deliver(Self.datagram(8))])
    }

    func testStrayTruncatedAndTooLargeAreCounted() throws {
        var p = up()
        let before = p.server.counters
        let otherChannel = try XCTUnwrap(
            UDPChannelCipher(keys: F.keys(.mediator), sessionID: F.sessionID).seal(Self.datagram(1), channelID: 1, counter: 100))
        let otherSession = try XCTUnwrap(
            UDPChannelCipher(keys: F.keys(.mediator), sessionID: F.sessionID + 1).seal(Self.datagram(1), channelID: 0, counter: 100))
        let inputs: [[UInt8]] = [
            otherChannel.readableByteArray, otherSession.readableByteArray, [0x02] + Array(repeating: 0, count: 40),
            [], [0x01], Array(p.wire.last!.1.readableByteArray.prefix(36)),
            Array(repeating: 1, count: 65_508),
        ]
        for bytes in inputs { XCTAssertEqual(p.server.receive(ByteBuffer(bytes: bytes), from: "M1", now: p.now), []) }
        XCTAssertEqual(p.server.counters.stray - before.stray, 3)
        XCTAssertEqual(p.server.counters.truncated - before.truncated, 3)
        XCTAssertEqual(p.server.counters.tooLarge - before.tooLarge, 1)
        XCTAssertEqual(p.server.counters.received, before.received)
    }

    func testRoundTripTime() throws {
        var p = Pair()
        let ping = p.mediator.tick(now: F.t0)
        guard case .send(let bytes, _) = try XCTUnwrap(ping.first) else { return XCTFail("no ping: \(ping)") }
        let answers = p.server.receive(bytes, from: "M1", now: F.t0 + .milliseconds(5))
        guard case .send(let pong, _) = try XCTUnwrap(answers.first { if case .send = $0 { return true } else { return false } })
        else { return XCTFail() }
        _ = p.mediator.receive(pong, from: "S", now: F.t0 + .milliseconds(10))
        XCTAssertEqual(p.mediator.roundTrip, .milliseconds(10))
    }

    /// Near the top of the counter the channel sends what it can, never 2^64 - 1, then goes down for
    /// good: the session's datagrams stay on the TCP channel.
    func testAnExhaustedCounterTakesTheChannelDown() throws {
        var p = Pair(mediatorCounter: UDPChannelCounter(next: .max - 20))
        p.tick()
        XCTAssertTrue(p.mediator.isUp)
        var sent = 0
        while p.offer(Self.datagram(UInt8(sent))) { sent += 1 }
        XCTAssertGreaterThan(sent, 5)
        XCTAssertEqual(p.serverDelivered.count, sent)
        p.tick()
        XCTAssertEqual(p.mediatorEvents.last?.1, .down)
        p.advance(by: .minutes(2))
        XCTAssertFalse(p.mediator.isUp)
        for (_, bytes) in p.wire {
            var b = bytes
            XCTAssertLessThan(try b.readUDPChannelHeader().counter, .max)
        }
    }

    /// Each datagram goes on one path: sealed for the channel, or refused (and sent on the TCP channel
    /// by the caller). Even when the network duplicates every datagram, the receiver delivers each
    /// once: a path switch or the network never doubles one.
    func testNoDatagramIsDeliveredTwice() {
        var p = up()
        p.duplicate = true
        var onUDP: [UDPChannelMessage] = []
        var onTCP: [UDPChannelMessage] = []
        for i in 0..<120 {
            if i == 40 { p.blocked = true }
            if i == 80 { p.blocked = false }
            let m = Self.datagram(UInt8(i))
            if p.offer(m) { onUDP.append(m) } else { onTCP.append(m) }
            p.advance(by: .seconds(1))
        }
        XCTAssertFalse(onTCP.isEmpty, "the channel went down while blocked")
        XCTAssertEqual(Set(onUDP.map { "\($0)" }).intersection(onTCP.map { "\($0)" }), [])
        let deliveredWhileOpen = p.serverDelivered
        XCTAssertEqual(deliveredWhileOpen.count, Set(deliveredWhileOpen.map { "\($0)" }).count, "a datagram delivered twice")
        XCTAssertTrue(deliveredWhileOpen.allSatisfy { m in onUDP.contains(m) })
        XCTAssertGreaterThan(p.server.counters.replayed, 0, "the duplicates were counted")
    }

    /// 20,000 random inputs and mangled real datagrams at both ends: nothing is delivered, the address
    /// never moves, every one is counted as a drop, and the channel still works afterwards.
    func testRandomDatagramsNeverCrashOrDeliver() throws {
        var p = up()
        XCTAssertTrue(p.offer(Self.datagram(1)))
        let real = p.wire.map { $0.1.readableByteArray }
        var rng = SeededGenerator(seed: 99)
        let serverBefore = p.server.counters
        let mediatorBefore = p.mediator.counters
        for i in 0..<20_000 {
            var bytes: [UInt8]
            switch i % 4 {
            case 0:
                bytes = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:
                // A plausible header: this session and channel, any counter.
                bytes = [1, 0, 0, 0] + withUnsafeBytes(of: F.sessionID.bigEndian, Array.init)
                bytes += (0..<Int.random(in: 8...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            default:
                bytes = real[Int.random(in: 0..<real.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                }
                if i % 8 == 2 { bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng))) }
            }
            let source = i % 3 == 0 ? "M1" : "X\(i)"
            XCTAssertEqual(p.server.receive(ByteBuffer(bytes: bytes), from: source, now: p.now), [], "input \(i)")
            XCTAssertEqual(p.mediator.receive(ByteBuffer(bytes: bytes), from: i % 2 == 0 ? "S" : source, now: p.now), [], "input \(i)")
        }
        XCTAssertEqual(p.server.counters.dropped - serverBefore.dropped, 20_000)
        XCTAssertEqual(p.mediator.counters.dropped - mediatorBefore.dropped, 20_000)
        XCTAssertEqual(p.server.counters.received, serverBefore.received)
        XCTAssertEqual(p.server.peerAddress, "M1")
        XCTAssertTrue(p.offer(Self.datagram(2)))
        XCTAssertEqual(p.serverDelivered, [Self.datagram(1), Self.datagram(2)])
    }
}

import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

/// The combined datagram path of a session (docs/protocol.md §9.9): a server and a mediator end joined
/// by an in-memory network that can drop everything, each with a fake TCP-channel path as fallback.
final class UDPChannelDatagramPathTests: XCTestCase {
    let serverAddress = address("203.0.113.10", 7000)
    let mediatorAddress = address("203.0.113.1", 40000)
    let peer = Endpoint(ip("192.168.77.10"), 53)
    let settings = UDPChannelSettings(keepaliveInterval: .seconds(1), deadTimeout: .seconds(3))

    var loop: EmbeddedEventLoop!
    var clock: TestClock!
    var tcp: (server: FakeDatagramPath, mediator: FakeDatagramPath)!
    var server: UDPChannelDatagramPath!
    var mediator: UDPChannelDatagramPath!
    /// Datagrams in flight: (to the server?, bytes).
    var wire: [(toServer: Bool, bytes: ByteBuffer)] = []
    var blocked = false
    var serverReceiver: DatagramRecorder!
    var mediatorReceiver: DatagramRecorder!

    override func setUp() {
        loop = EmbeddedEventLoop()
        clock = TestClock()
        let pair = FakeDatagramPath.pair(maxSize: 70_000)
        tcp = (pair.0, pair.1)
        let clock = clock!
        server = UDPChannelDatagramPath(
            role: .server, fallback: tcp.server, settings: settings, eventLoop: loop, logger: Logger(label: "test"), now: { clock.now })
        mediator = UDPChannelDatagramPath(
            role: .mediator, fallback: tcp.mediator, settings: settings, eventLoop: loop, logger: Logger(label: "test"),
            now: { clock.now })
        let a = [UInt8](repeating: 0xa1, count: 32)
        let b = [UInt8](repeating: 0xb2, count: 32)
        server.start(sessionID: 7, keys: SessionKeys(sending: a, receiving: b)) { [unowned self] bytes, _ in
            if !blocked { wire.append((false, bytes)) }
        }
        mediator.start(sessionID: 7, keys: SessionKeys(sending: b, receiving: a)) { [unowned self] bytes, _ in
            if !blocked { wire.append((true, bytes)) }
        }
        serverReceiver = DatagramRecorder()
        mediatorReceiver = DatagramRecorder()
        server.attach(portID: 5, serverReceiver)
        mediator.attach(portID: 5, mediatorReceiver)
    }

    override func tearDown() {
        server.close()
        mediator.close()
        try? loop.syncShutdownGracefully()
    }

    /// Delivers what is in flight, and what that causes, until the network is quiet.
    func pump() {
        while !wire.isEmpty {
            let (toServer, bytes) = wire.removeFirst()
            if toServer { server.received(bytes, from: mediatorAddress) } else { mediator.received(bytes, from: serverAddress) }
        }
    }

    /// Moves the clock and the loop's timers together, delivering between steps.
    func advance(_ t: TimeAmount, step: TimeAmount = .milliseconds(250)) {
        var done = TimeAmount.zero
        while done < t {
            clock.advance(step)
            loop.advanceTime(by: step)
            pump()
            done = done + step
        }
    }

    func bringUp() {
        mediator.openChannel(1, to: serverAddress)
        pump()
        XCTAssertTrue(mediator.isUDPUp)
        XCTAssertTrue(server.isUDPUp)
    }

    /// Before the channel is up, datagrams are DATAGRAM frames; once up, they travel the channel
    /// only, both ways, and reach the same receivers.
    func testDatagramsTakeTheChannelOnceItIsUpAndTheTCPChannelBefore() {
        server.send(portID: 5, peer: peer, bytes: datagram(100))
        XCTAssertEqual(tcp.server.sent.count, 1)
        XCTAssertEqual(mediatorReceiver.received.count, 1)
        bringUp()
        server.send(portID: 5, peer: peer, bytes: datagram(1400, 1))
        mediator.send(portID: 5, peer: peer, bytes: datagram(8000, 2))
        pump()
        XCTAssertEqual(tcp.server.sent.count, 1, "nothing more on the TCP channel")
        XCTAssertEqual(tcp.mediator.sent.count, 0)
        XCTAssertEqual(mediatorReceiver.received.last, .init(portID: 5, peer: peer, bytes: datagram(1400, 1)))
        XCTAssertEqual(serverReceiver.received, [.init(portID: 5, peer: peer, bytes: datagram(8000, 2))])
        XCTAssertEqual(server.counters.delivered, 1)
        XCTAssertEqual(mediator.counters.delivered, 1)
    }

    /// A blocked network takes the channel down at both ends within the dead timeout: datagrams go on
    /// the TCP channel, each on one path only; unblocked, it comes back up within a keepalive or two.
    func testFallsBackWhenBlockedAndMovesBackWhenUnblocked() {
        bringUp()
        blocked = true
        advance(.seconds(4))
        XCTAssertFalse(server.isUDPUp)
        XCTAssertFalse(mediator.isUDPUp)
        server.send(portID: 5, peer: peer, bytes: datagram(10))
        XCTAssertEqual(tcp.server.sent.count, 1)
        XCTAssertEqual(mediatorReceiver.received.count, 1)
        blocked = false
        advance(.seconds(2))
        XCTAssertTrue(server.isUDPUp)
        XCTAssertTrue(mediator.isUDPUp)
        server.send(portID: 5, peer: peer, bytes: datagram(11))
        pump()
        XCTAssertEqual(tcp.server.sent.count, 1)
        XCTAssertEqual(mediatorReceiver.received.count, 2, "each datagram arrived once")
    }

    /// TUN mode's packets (docs/protocol.md §10): sealed as PACKET on the channel while it is up and
    /// handed to the packet receiver, not to any port; while it is down they need the TCP channel's
    /// PACKET frame, which a fallback that is not the tunnel's cannot send, so they are dropped.
    func testPacketsTakeTheChannelToThePacketReceiver() {
        var got: [ByteBuffer] = []
        mediator.packetReceiver = { got.append($0) }
        XCTAssertFalse(server.sendPacket(datagram(60)), "no channel up and no tunnel fallback: dropped")
        bringUp()
        XCTAssertTrue(server.sendPacket(datagram(1400, 3)))
        pump()
        XCTAssertEqual(got, [datagram(1400, 3)])
        XCTAssertEqual(mediatorReceiver.received.count, 0, "packets never reach a port")
        XCTAssertEqual(tcp.server.sent.count, 0)
        XCTAssertEqual(mediator.counters.delivered, 1)
        // Without a receiver (TUN mode not up) a packet is dropped quietly.
        mediator.packetReceiver = nil
        XCTAssertTrue(server.sendPacket(datagram(20, 4)))
        pump()
        XCTAssertEqual(got.count, 1)
    }

    /// Keepalives keep an idle channel up: nothing but PINGs for a long while, still up.
    func testKeepalivesKeepAnIdleChannelUp() {
        bringUp()
        advance(.seconds(20))
        XCTAssertTrue(server.isUDPUp)
        XCTAssertTrue(mediator.isUDPUp)
        XCTAssertGreaterThanOrEqual(mediator.counters.keepalivesSent, 19)
    }

    /// Too large for one channel datagram, or a peer given by name (a channel DATAGRAM carries
    /// addresses only): the TCP channel takes it, counted, never the channel.
    func testWhatTheChannelCannotCarryTakesTheTCPChannel() {
        bringUp()
        let big = UDPChannelMessage.maxDatagramBytes(for: peer) + 1
        XCTAssertGreaterThanOrEqual(server.maxDatagramSize(for: peer), big)
        server.send(portID: 5, peer: peer, bytes: datagram(big))
        server.send(portID: 5, peer: Endpoint(host: .name("printer.lan"), port: 631), bytes: datagram(5))
        pump()
        XCTAssertEqual(tcp.server.sent.count, 2)
        XCTAssertEqual(server.fallbackWhileUp, 2)
        XCTAssertEqual(mediator.counters.delivered, 0, "neither took the channel")
        XCTAssertEqual(mediatorReceiver.received.count, 2)
    }

    /// Datagrams naming channels the server does not hold that do not authenticate take no channel
    /// slot and are counted as stray; the real channel is unaffected.
    func testForgedDatagramsForNewChannelsTakeNoSlot() {
        for id in UInt16(2)...20 {
            var forged = ByteBuffer()
            _ = forged.writeUDPChannelHeader(UDPChannelHeader(channelID: id, sessionID: 7, counter: 0))
            forged.writeBytes([UInt8](repeating: 0, count: 40))
            server.received(forged, from: address("198.51.100.9", 1234))
        }
        XCTAssertEqual(server.channelIDs, [])
        XCTAssertEqual(server.counters.stray, 19)
        bringUp()
        XCTAssertEqual(server.channelIDs, [1])
    }

    /// The session's IN/OUT count the datagrams a channel carried as the TCP channel counts DATA: the
    /// payload, once, on delivery; keepalives, the sealing around a datagram, a replayed copy, a forged
    /// one and what took the TCP channel instead (the session counts that) are not counted here.
    func testPayloadBytesCountDeliveredDatagramsOnly() {
        server.send(portID: 5, peer: peer, bytes: datagram(100))  // before the channel: TCP
        bringUp()
        advance(.seconds(3))  // keepalives only
        XCTAssertEqual(server.payloadBytesOut, 0)
        XCTAssertEqual(mediator.payloadBytesIn, 0)
        server.send(portID: 5, peer: peer, bytes: datagram(1400, 1))
        let sealed = wire.last!.bytes
        XCTAssertGreaterThan(sealed.readableBytes, 1400)
        pump()
        mediator.send(portID: 5, peer: peer, bytes: datagram(8000, 2))
        pump()
        XCTAssertEqual(server.payloadBytesOut, 1400)
        XCTAssertEqual(mediator.payloadBytesIn, 1400)
        XCTAssertEqual(mediator.payloadBytesOut, 8000)
        XCTAssertEqual(server.payloadBytesIn, 8000)
        mediator.received(sealed, from: serverAddress)  // replayed
        var forged = sealed
        forged.setInteger(forged.getInteger(at: forged.writerIndex - 1, as: UInt8.self)! ^ 0xff, at: forged.writerIndex - 1)
        mediator.received(forged, from: serverAddress)
        XCTAssertEqual(mediator.payloadBytesIn, 1400, "replayed and forged datagrams are not counted")
        XCTAssertEqual(mediatorReceiver.received.count, 2)
    }

    /// The session ended: the path stops its timers and sends nothing more on the channel.
    func testClosedPathSendsNothing() {
        bringUp()
        server.close()
        mediator.close()
        let sent = mediator.counters.sent
        advance(.seconds(5))
        XCTAssertEqual(mediator.counters.sent, sent)
    }
}

import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

final class TunnelDatagramPathTests: XCTestCase {
    func session(maxPayload: UInt32) -> TunnelSession {
        var settings = SessionSettings()
        settings.maxPayload = maxPayload
        let machine = MediatorSessionStateMachine(
            name: "acme", secret: [1, 2, 3], nonce: [UInt8](repeating: 7, count: 32), softwareVersion: "test", settings: settings)
        return TunnelSession(
            machine: machine, settings: settings, eventLoop: EmbeddedEventLoop(), logger: Logger(label: "test"),
            now: { .uptimeNanoseconds(0) })
    }

    /// The largest datagram fills the peer's frame limit exactly, for IPv4 and IPv6 peers; one byte
    /// more is a frame the peer refuses.
    func testLargestDatagramFillsThePeersFrameLimitExactly() throws {
        let limit: UInt32 = 1024
        let path = TunnelDatagramPath(session: session(maxPayload: limit))
        for peer in [Endpoint(ip("192.168.77.10"), 53), Endpoint(ip("fd00:77::10"), 53)] {
            let max = path.maxDatagramSize(for: peer)
            for (size, fits) in [(max, true), (max + 1, false)] {
                var wire = ByteBuffer()
                wire.writeFrame(.datagram(.init(portID: 0xffff_ffff, peer: peer, bytes: datagram(size))))
                XCTAssertEqual(wire.readableBytes - Frame.headerLength, Int(limit) + (fits ? 0 : 1), "\(peer), \(size) bytes")
                var decoder = FrameDecoder(maxPayload: limit)
                if fits {
                    XCTAssertEqual(try decoder.next(&wire), .datagram(.init(portID: 0xffff_ffff, peer: peer, bytes: datagram(size))))
                } else {
                    XCTAssertThrowsError(try decoder.next(&wire))
                }
            }
        }
        XCTAssertEqual(
            path.maxDatagramSize(for: Endpoint(ip("192.168.77.10"), 53)) - path.maxDatagramSize(for: Endpoint(ip("fd00::1"), 53)), 12,
            "an IPv6 peer's address takes 12 bytes more")
    }

    func testAClosedSessionCannotSend() {
        let path = TunnelDatagramPath(session: session(maxPayload: 4096))
        XCTAssertFalse(path.isOpen)
        XCTAssertFalse(path.canSend)
        var drops = DatagramDrops()
        XCTAssertFalse(path.offer(portID: 1, peer: Endpoint(ip("10.0.0.1"), 1), bytes: datagram(10), drops: &drops))
        XCTAssertEqual(drops[.pathFull], 1)
        XCTAssertFalse(path.offer(portID: 1, peer: Endpoint(ip("10.0.0.1"), 1), bytes: datagram(5000), drops: &drops))
        XCTAssertEqual(drops[.oversize], 1)
    }
}

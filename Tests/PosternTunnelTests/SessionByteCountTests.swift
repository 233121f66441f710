import NIOCore
import PosternTunnel
import PosternWire
import XCTest

/// `bytesOut` counts what `bytesIn` counts, the other way: DATA payload bytes. It counted whole
/// frames, control frames too, so `ctl status` showed 0 B in and 194 KiB out for a session that only
/// opened UDP ports and relayed datagrams.
final class SessionByteCountTests: XCTestCase {
    func testBytesOutCountsDataPayloadOnly() throws {
        let tunnel = try EmbeddedTunnel()
        let before = tunnel.session.bytesOut
        tunnel.session.send(.ping(.init(token: 7)))
        tunnel.session.sendData(portID: 3, ByteBuffer(repeating: 1, count: 100))  // copied behind its header
        tunnel.session.sendData(portID: 3, ByteBuffer(repeating: 2, count: 100_000))  // its own buffer
        tunnel.session.send(.data(.init(portID: 3, bytes: ByteBuffer(repeating: 3, count: 10))))
        let frames = try tunnel.framesOut()
        XCTAssertEqual(frames.count, 4)
        XCTAssertEqual(tunnel.session.bytesOut - before, 100_110)
    }

    /// DATAGRAM frames count their datagram both ways, not the peer address or the frame around it:
    /// a session that only relayed `udp:` forward traffic on the TCP channel showed 0 B in and out.
    func testDatagramPayloadCountsBothWays() throws {
        let tunnel = try EmbeddedTunnel()
        let peer = Endpoint(IPAddress("192.168.77.10")!, 53)
        let (inBefore, outBefore) = (tunnel.session.bytesIn, tunnel.session.bytesOut)
        tunnel.session.send(.datagram(.init(portID: 3, peer: peer, bytes: ByteBuffer(repeating: 1, count: 300))))
        try tunnel.deliver(.datagram(.init(portID: 3, peer: peer, bytes: ByteBuffer(repeating: 2, count: 40))))
        try tunnel.deliver(.datagram(.init(portID: 99, peer: peer, bytes: ByteBuffer(repeating: 2, count: 2))))
        XCTAssertEqual(try tunnel.framesOut().count, 1)
        XCTAssertEqual(tunnel.session.bytesOut - outBefore, 300)
        XCTAssertEqual(tunnel.session.bytesIn - inBefore, 42)
    }
}

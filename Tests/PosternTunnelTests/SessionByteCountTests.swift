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
}

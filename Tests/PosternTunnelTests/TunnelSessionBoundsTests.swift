import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

/// What a peer that asks for answers but never reads them can make a session hold (issue 8, item 7):
/// answers written while the tunnel is not writable are bounded in frames and bytes, and past the
/// bound the session ends with the reason.
final class TunnelSessionBoundsTests: XCTestCase {
    private func ping(_ n: Int) -> Frame { .ping(.init(token: UInt64(n))) }

    func testPingsWhileTheTunnelIsUnwritableEndTheSessionPastTheBound() throws {
        let tunnel = try EmbeddedTunnel()
        tunnel.setWritable(false)
        for i in 0..<TunnelSession.maxStalledFrames {
            try tunnel.deliver(ping(i))
        }
        XCTAssertNil(tunnel.session.end, "at the bound the session still goes on")
        try tunnel.deliver(ping(999_999))
        let end = try XCTUnwrap(tunnel.session.end, "one PING past the bound ends the session")
        XCTAssertEqual(end.code, .limitExceeded)
        XCTAssertTrue(end.message.contains("does not read"), end.message)
        XCTAssertFalse(tunnel.channel.isActive, "the connection is closed")
        let out = try tunnel.framesOut()
        XCTAssertEqual(out.count, TunnelSession.maxStalledFrames + 1, "the PONGs within the bound, then GOAWAY")
        guard case .goAway(let g)? = out.last else { return XCTFail("no GOAWAY last: \(String(describing: out.last))") }
        XCTAssertEqual(g.code, .limitExceeded)
    }

    func testTheCountStartsAgainOnceTheTunnelDrains() throws {
        let tunnel = try EmbeddedTunnel()
        for round in 0..<3 {
            tunnel.setWritable(false)
            for i in 0..<(TunnelSession.maxStalledFrames - 10) { try tunnel.deliver(ping(i)) }
            tunnel.setWritable(true)
            XCTAssertNil(tunnel.session.end, "round \(round): a peer that reads in between is never cut off")
            _ = try tunnel.framesOut()
        }
        // Writable all along: PONGs are answered without any bound.
        for i in 0..<(TunnelSession.maxStalledFrames + 100) { try tunnel.deliver(ping(i)) }
        XCTAssertNil(tunnel.session.end)
        XCTAssertEqual(try tunnel.framesOut().count, TunnelSession.maxStalledFrames + 100)
    }

    func testTheByteBoundHoldsForLargeAnswers() {
        // A PONG is 14 bytes: the frame bound comes first for PINGs; answers with messages (FAILED,
        // GOAWAY) hit the byte bound, which keeps the memory held below a few MiB either way.
        XCTAssertLessThanOrEqual(TunnelSession.maxStalledFrames * 14, 2 * TunnelSession.maxStalledBytes)
        XCTAssertLessThanOrEqual(TunnelSession.maxStalledBytes, 4 << 20)
    }
}

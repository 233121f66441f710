import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternPacket
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// The server's side of TUN's flags and TUN_STATS (docs/protocol.md §10.1, §10.5), on a real
/// `MediatorLink` behind a real server `TunnelSession` (as MediatorLinkEchoTests): the flags byte goes
/// out only when asked for, TUN_STATS is kept once asked for, and a TUN_STATS nobody asked for ends
/// the session as a protocol error.
final class MediatorLinkTunStatsTests: XCTestCase {
    private var harness: EstablishedLinkHarness!
    private var channel: EmbeddedChannel { harness.channel }
    private var link: MediatorLink { harness.link }

    override func setUpWithError() throws {
        harness = try EstablishedLinkHarness()
    }

    override func tearDown() {
        harness.finish()
        harness = nil
    }

    private func framesOut() throws -> [Frame] { try harness.framesOut() }

    private func environment(_ capabilities: MediatorEnvironment.Capabilities) throws {
        try harness.environment(capabilities)
    }

    private let stats = Frame.TunStats(toLAN: 5, fromLAN: 4, errorsSent: 1, dropped: [("destination", 3)])

    func testTunStatsNobodyAskedForIsAProtocolError() throws {
        try channel.writeInbound(Frame.tunStats(stats))
        let out = try framesOut()
        XCTAssertTrue(out.contains { if case .goAway(let g) = $0 { return g.code == .protocolError } else { return false } }, "\(out)")
        XCTAssertNil(link.mediatorTunStats)
    }

    func testTheFlagsGoOutAndTheStatsAreKept() throws {
        _ = link.requestTun(mtu: 1400, flags: [.ipv6, .stats])
        let tun = try framesOut().compactMap { if case .tun(let t) = $0 { return t } else { return nil } }
        XCTAssertEqual(tun.first?.flags, [.ipv6, .stats])
        try channel.writeInbound(Frame.tunStats(stats))
        XCTAssertEqual(link.mediatorTunStats, stats)
        XCTAssertTrue(link.isOpen)
    }

    /// The device part of TUN_STATS (flag bit 2) is kept and shown with the offloads by name; one
    /// without it (an older mediator, or the raw LAN presence) shows no device.
    func testTheDevicePartReachesTheCountersWithItsOffloadsNamed() throws {
        _ = link.requestTun(mtu: 1400, flags: [.ipv6, .stats, .deviceStats])
        let tun = try framesOut().compactMap { if case .tun(let t) = $0 { return t } else { return nil } }
        XCTAssertEqual(tun.first?.flags?.rawValue, 0x07)
        var withDevice = stats
        withDevice.device = .init(asked: true, offloads: 0x23, superPacketsRead: 7, coalescedWrites: 2, offloadRefused: 1)
        try channel.writeInbound(Frame.tunStats(withDevice))
        XCTAssertTrue(link.isOpen)
        let offload = try XCTUnwrap(PacketCounters(try XCTUnwrap(link.mediatorTunStats)).offload)
        XCTAssertEqual(offload.offloads, "csum,tso4,uso4")
        XCTAssertEqual([offload.superPacketsRead, offload.coalescedWrites, offload.offloadRefused], [7, 2, 1])
        XCTAssertTrue(offload.asked)
        withDevice.device = .init(asked: false, offloads: 0, superPacketsRead: 0, coalescedWrites: 0, offloadRefused: 0)
        try channel.writeInbound(Frame.tunStats(withDevice))
        XCTAssertEqual(PacketCounters(try XCTUnwrap(link.mediatorTunStats)).offload?.offloads, "none")
        XCTAssertEqual(PacketCounters(try XCTUnwrap(link.mediatorTunStats)).offload?.asked, false)
        try channel.writeInbound(Frame.tunStats(stats))
        XCTAssertNil(PacketCounters(try XCTUnwrap(link.mediatorTunStats)).offload)
    }

    func testWithoutFlagsTunIsTheOriginalFrameAndStatsAreStillRefused() throws {
        _ = link.requestTun(mtu: 1400)
        let tun = try framesOut().compactMap { if case .tun(let t) = $0 { return t } else { return nil } }
        XCTAssertEqual(tun.count, 1)
        XCTAssertNil(tun.first?.flags)
        try channel.writeInbound(Frame.tunStats(stats))
        XCTAssertTrue(try framesOut().contains { if case .goAway = $0 { return true } else { return false } })
    }

    /// TUN_CLOSE goes from server to mediator only: a mediator sending it breaks the protocol.
    func testTunCloseFromAMediatorIsAProtocolError() throws {
        try channel.writeInbound(Frame.tunClose(.init(requestID: 1, message: "no")))
        XCTAssertTrue(try framesOut().contains { if case .goAway(let g) = $0 { return g.code == .protocolError } else { return false } })
    }
}

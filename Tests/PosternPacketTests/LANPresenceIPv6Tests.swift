import NIOCore
import PosternPacket
import PosternWire
import XCTest

/// The raw LAN presence's IPv6 half (issue 11) with an injected clock: neighbour solicitations for
/// the address answered, the unsolicited advertisement on start, capture of IPv6 to the address,
/// next-hop resolution by its own solicitations (on-link in the /64, else the gateway's link-local
/// address), address unreachable, and the abuse cases (unsolicited or forged advertisements, hop
/// limit other than 255, a request trying to move a fresh entry, frames for other addresses).
final class LANPresenceIPv6Tests: XCTestCase {
    let mac: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]
    let lanhostMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a]
    let routerMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe]
    let attackerMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x66]
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let address = IPAddress("fd00:77::50")!
    let lanhost = IPAddress("fd00:77::10")!
    let gateway = IPAddress("fe80::1")!

    func presence(gateway: IPAddress? = IPAddress("fe80::1")!) -> LANPresence {
        LANPresence(
            address: address, mac: mac, lan: .init(parsing: "fd00:77::50/64")!, hostAddress: IPAddress("fd00:77::2")!,
            gateway: gateway)
    }

    func frames(_ actions: [LANPresence.Action]) -> [[UInt8]] {
        actions.compactMap { if case .sendFrame(let f) = $0 { return f } else { return nil } }
    }

    func packets(_ actions: [LANPresence.Action]) -> [ByteBuffer] {
        actions.compactMap { if case .toRemote(let p) = $0 { return p } else { return nil } }
    }

    func echo(_ src: String, _ dst: String, size: Int = 8) -> ByteBuffer {
        ByteBuffer(bytes: IPv6TestPackets.echo(src, dst, size: size))
    }

    /// The solicitations among `actions`, as (target, Ethernet destination).
    func solicitations(_ actions: [LANPresence.Action]) -> [(IPAddress, [UInt8])] {
        frames(actions).compactMap { f in
            guard let nd = try? NeighbourDiscovery(frame: f), nd.kind == .solicitation else { return nil }
            return (nd.target, Array(f[0..<6]))
        }
    }

    /// An advertisement of `target` at `targetMAC` to the address, solicited or not.
    func advertisement(_ target: IPAddress, at targetMAC: [UInt8], solicited: Bool = true, hopLimit: UInt8 = 255) -> ByteBuffer {
        var f = NeighbourDiscovery(
            kind: .advertisement, sourceMAC: targetMAC, source: target, destination: address, target: target,
            flags: (solicited ? NeighbourDiscovery.solicitedFlag : 0) | NeighbourDiscovery.overrideFlag, linkLayerAddress: targetMAC
        ).frame(to: mac)
        f[21] = hopLimit
        return ByteBuffer(bytes: f)
    }

    func testAnswersSolicitationsAndAnnounces() throws {
        var p = presence()
        let announcement = try NeighbourDiscovery(frame: p.announcement)
        XCTAssertEqual(announcement.kind, .advertisement)
        XCTAssertEqual(announcement.target, address)
        XCTAssertEqual(announcement.linkLayerAddress, mac)
        XCTAssertEqual(p.multicastGroup, [0x33, 0x33, 0xff, 0x00, 0x00, 0x50])
        let v4 = LANPresence(
            address: IPAddress("192.168.77.50")!, mac: mac, lan: .init(parsing: "192.168.77.50/24")!,
            hostAddress: IPAddress("192.168.77.2")!, gateway: nil)
        XCTAssertNil(v4.multicastGroup)

        // lanhost asks (to the solicited-node group) and gets a solicited advertisement, unicast.
        let ns = NeighbourDiscovery.solicitation(for: address, from: lanhost, mac: lanhostMAC)
        let out = frames(p.frameFromLAN(ByteBuffer(bytes: ns), now: t0))
        XCTAssertEqual(out.count, 1)
        let na = try NeighbourDiscovery(frame: out[0])
        XCTAssertEqual(Array(out[0][0..<6]), lanhostMAC)
        XCTAssertEqual(na.destination, lanhost)
        XCTAssertEqual(na.flags, NeighbourDiscovery.solicitedFlag | NeighbourDiscovery.overrideFlag)
        XCTAssertEqual(na.linkLayerAddress, mac)
        XCTAssertEqual(out[0][21], 255, "hop limit 255 out")
        XCTAssertEqual(p.neighbour(lanhost, now: t0), lanhostMAC, "the asker is learned")
        XCTAssertEqual(p.counters.arpAnswered, 1)

        // The same solicitation with hop limit 254 (it crossed a router): ignored, no answer.
        var routed = ns
        routed[21] = 254
        XCTAssertEqual(p.frameFromLAN(ByteBuffer(bytes: routed), now: t0), [])
        // A solicitation for another address is not ours to answer.
        let other = NeighbourDiscovery.solicitation(for: IPAddress("fd00:77::51")!, from: lanhost, mac: lanhostMAC)
        XCTAssertEqual(p.frameFromLAN(ByteBuffer(bytes: other), now: t0), [])
        XCTAssertEqual(p.counters.arpAnswered, 1)
        XCTAssertEqual(p.counters.arpIgnored, 2)
    }

    func testCapturesOnlyIPv6ToTheAddressAtItsMAC() {
        var p = presence()
        let packet = echo("fd00:77::10", "fd00:77::50")
        var frame = ByteBuffer(bytes: mac + lanhostMAC + [0x86, 0xdd])
        frame.writeImmutableBuffer(packet)
        frame.writeBytes([0, 0, 0, 0])  // trailing padding
        XCTAssertEqual(packets(p.frameFromLAN(frame, now: t0)), [packet])

        var otherMAC = frame
        otherMAC.setBytes(lanhostMAC, at: 0)
        var otherIP = ByteBuffer(bytes: mac + lanhostMAC + [0x86, 0xdd])
        otherIP.writeImmutableBuffer(echo("fd00:77::10", "fd00:77::51"))
        var lying = frame
        lying.setInteger(UInt16(1400), at: 18)  // payload length beyond the frame
        var ipv4 = frame
        ipv4.setInteger(UInt16(0x0800), at: 12)
        for f in [otherMAC, otherIP, lying, ipv4, frame.getSlice(at: 0, length: 30)!] {
            XCTAssertEqual(p.frameFromLAN(f, now: t0), [])
        }
        XCTAssertEqual(p.counters.framesIgnored, 5)
        XCTAssertEqual(p.counters.framesToRemote, 1)
    }

    func testResolvesOnLinkAndThroughTheGatewayWithItsOwnSolicitations() throws {
        var p = presence()
        let out = p.packetToLAN(echo("fd00:77::50", "fd00:77::10"), now: t0)
        XCTAssertEqual(solicitations(out).map(\.0), [lanhost])
        XCTAssertEqual(solicitations(out).map(\.1), [[0x33, 0x33, 0xff, 0x00, 0x00, 0x10]], "to lanhost's solicited-node group")
        XCTAssertEqual(try NeighbourDiscovery(frame: frames(out)[0]).source, address)
        XCTAssertEqual(p.packetToLAN(echo("fd00:77::50", "fd00:77::10", size: 9), now: t0), [], "waits, no second question")
        let sent = frames(p.frameFromLAN(advertisement(lanhost, at: lanhostMAC), now: t0 + .milliseconds(3)))
        XCTAssertEqual(sent.count, 2)
        for f in sent {
            XCTAssertEqual(Array(f[0..<14]), lanhostMAC + mac + [0x86, 0xdd])
        }
        XCTAssertEqual(sent.map(\.count), [14 + 48 + 8, 14 + 48 + 9], "in order")

        // Off-link: the gateway's link-local address is asked for.
        let off = p.packetToLAN(echo("fd00:77::50", "fd00:99::1"), now: t0)
        XCTAssertEqual(solicitations(off).map(\.0), [gateway])
        let routed = frames(p.frameFromLAN(advertisement(gateway, at: routerMAC), now: t0))
        XCTAssertEqual(routed.map { Array($0[0..<6]) }, [routerMAC])
        XCTAssertEqual(Array(routed[0][38..<54]), IPAddress("fd00:99::1")!.bytes, "the packet keeps its destination")

        // Multicast goes to its 33:33 group at once; IPv4 is not this presence's.
        let mc = frames(p.packetToLAN(echo("fd00:77::50", "ff02::1"), now: t0))
        XCTAssertEqual(mc.map { Array($0[0..<6]) }, [[0x33, 0x33, 0, 0, 0, 1]])
        XCTAssertEqual(p.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.10"), now: t0), [])
    }

    func testSilentNeighbourGetsAddressUnreachable() throws {
        var p = presence()
        _ = p.packetToLAN(echo("fd00:77::50", "fd00:77::99"), now: t0)
        XCTAssertEqual(solicitations(p.tick(now: t0 + .seconds(1))).count, 1)
        XCTAssertEqual(solicitations(p.tick(now: t0 + .seconds(2))).count, 1)
        let errors = packets(p.tick(now: t0 + .seconds(3)))
        XCTAssertEqual(errors.count, 1)
        let e = try XCTUnwrap(errors.first)
        XCTAssertEqual(e.getInteger(at: 40, as: UInt8.self), 1, "ICMPv6 destination unreachable")
        XCTAssertEqual(e.getInteger(at: 41, as: UInt8.self), 3, "address unreachable")
        XCTAssertEqual(e.getBytes(at: 24, length: 16), address.bytes)
        XCTAssertEqual(p.counters.unreachable, 1)

        var noGateway = presence(gateway: nil)
        let net = packets(noGateway.packetToLAN(echo("fd00:77::50", "fd00:99::1"), now: t0))
        XCTAssertEqual(net.first?.getInteger(at: 41, as: UInt8.self), 0, "no route")
    }

    func testForgedAdvertisementsTeachNothing() {
        var p = presence()
        // Unsolicited, for a neighbour nobody asked about: nothing learned.
        XCTAssertEqual(p.frameFromLAN(advertisement(lanhost, at: attackerMAC), now: t0), [])
        XCTAssertNil(p.neighbour(lanhost, now: t0))
        // While asking: an advertisement without the solicited flag, or with hop limit 64, is ignored.
        _ = p.packetToLAN(echo("fd00:77::50", "fd00:77::10"), now: t0)
        XCTAssertEqual(p.frameFromLAN(advertisement(lanhost, at: attackerMAC, solicited: false), now: t0), [])
        XCTAssertEqual(p.frameFromLAN(advertisement(lanhost, at: attackerMAC, hopLimit: 64), now: t0), [])
        XCTAssertNil(p.neighbour(lanhost, now: t0))
        XCTAssertEqual(p.counters.arpIgnored, 3)
        // The real answer teaches it; a later forged solicitation from lanhost's address with another
        // MAC does not move the fresh entry (it is still answered).
        XCTAssertEqual(frames(p.frameFromLAN(advertisement(lanhost, at: lanhostMAC), now: t0)).count, 1)
        let forged = NeighbourDiscovery.solicitation(for: address, from: lanhost, mac: attackerMAC)
        XCTAssertEqual(frames(p.frameFromLAN(ByteBuffer(bytes: forged), now: t0)).count, 1)
        XCTAssertEqual(p.neighbour(lanhost, now: t0), lanhostMAC)
        // A flood of garbage on 0x86dd crashes nothing and counts.
        for n in 0..<80 {
            var junk = ByteBuffer(bytes: mac + lanhostMAC + [0x86, 0xdd])
            junk.writeBytes((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37) })
            _ = p.frameFromLAN(junk, now: t0)
        }
    }
}

import NIOCore
import PosternPacket
import PosternWire
import XCTest

/// The raw LAN presence's state machine (issue 11) with an injected clock: ARP answers and
/// announcements, capture of the address's packets, next-hop resolution with its queue, retries,
/// host unreachable, expiry and refresh, and the abuse cases (forged replies, conflicts, frames for
/// other addresses or MACs, floods of unresolvable destinations).
final class LANPresenceTests: XCTestCase {
    let mac: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]
    let lanhostMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a]
    let routerMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe]
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func presence(gateway: String? = "192.168.77.1") -> LANPresence {
        LANPresence(
            address: IPAddress("192.168.77.50")!, mac: mac, lan: .init(parsing: "192.168.77.50/24")!,
            hostAddress: IPAddress("192.168.77.2")!, gateway: gateway.map { IPAddress($0)! })
    }

    func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    func arp(_ op: ARPPacket.Operation, from senderMAC: [UInt8], _ senderIP: String, to targetIP: String, dest: [UInt8]) -> ByteBuffer {
        ByteBuffer(
            bytes: ARPPacket(
                operation: op, senderMAC: senderMAC, senderIP: ip(senderIP), targetMAC: op == .reply ? mac : [0, 0, 0, 0, 0, 0],
                targetIP: ip(targetIP)
            )
            .frame(from: senderMAC, to: dest))
    }

    func frames(_ actions: [LANPresence.Action]) -> [[UInt8]] {
        actions.compactMap { if case .sendFrame(let f) = $0 { return f } else { return nil } }
    }

    func packets(_ actions: [LANPresence.Action]) -> [ByteBuffer] {
        actions.compactMap { if case .toRemote(let p) = $0 { return p } else { return nil } }
    }

    /// The ARP requests among `actions`, as (target IP, Ethernet destination).
    func requests(_ actions: [LANPresence.Action]) -> [(IPAddress, [UInt8])] {
        frames(actions).compactMap { f in
            guard let a = try? ARPPacket(frame: f), a.operation == .request else { return nil }
            return (a.targetIP, Array(f[0..<6]))
        }
    }

    func testAnswersARPForTheAddressAndAnnouncesIt() throws {
        var p = presence()
        let announcement = try ARPPacket(frame: p.announcement)
        XCTAssertEqual(Array(p.announcement[0..<6]), ARPPacket.broadcast)
        XCTAssertEqual(announcement.senderIP, ip("192.168.77.50"))
        XCTAssertEqual(announcement.targetIP, ip("192.168.77.50"))
        XCTAssertEqual(announcement.senderMAC, mac)

        let out = frames(
            p.frameFromLAN(arp(.request, from: lanhostMAC, "192.168.77.10", to: "192.168.77.50", dest: ARPPacket.broadcast), now: t0))
        XCTAssertEqual(out.count, 1)
        let reply = try ARPPacket(frame: out[0])
        XCTAssertEqual(reply.operation, .reply)
        XCTAssertEqual(reply.senderMAC, mac)
        XCTAssertEqual(reply.senderIP, ip("192.168.77.50"))
        XCTAssertEqual(reply.targetMAC, lanhostMAC)
        XCTAssertEqual(Array(out[0][0..<6]), lanhostMAC, "the reply goes to the asker only")
        // The asker is learned: a packet to it goes out at once, no ARP round.
        XCTAssertEqual(p.neighbour(ip("192.168.77.10"), now: t0), lanhostMAC)
        XCTAssertEqual(p.counters.arpAnswered, 1)
    }

    func testCapturesOnlyIPv4ToTheAddressAtItsMAC() {
        var p = presence()
        let packet = PacketPolicyTests.ipv4("192.168.77.10", "192.168.77.50", payload: 8)
        var frame = ByteBuffer(bytes: mac + lanhostMAC + [0x08, 0x00])
        frame.writeImmutableBuffer(packet)
        frame.writeBytes([UInt8](repeating: 0, count: 60 - frame.readableBytes))  // Ethernet padding
        XCTAssertEqual(packets(p.frameFromLAN(frame, now: t0)), [packet], "padding cut at the IP total length")

        // To another MAC (or broadcast), to another address, truncated, not IP: ignored.
        var otherMAC = frame
        otherMAC.setBytes(lanhostMAC, at: 0)
        var broadcast = frame
        broadcast.setBytes(ARPPacket.broadcast, at: 0)
        var otherIP = ByteBuffer(bytes: mac + lanhostMAC + [0x08, 0x00])
        otherIP.writeImmutableBuffer(PacketPolicyTests.ipv4("192.168.77.10", "192.168.77.51"))
        var lying = frame
        lying.setInteger(UInt16(1500), at: 16)  // total length beyond the frame
        var ipv6 = frame
        ipv6.setInteger(UInt16(0x86dd), at: 12)
        for f in [otherMAC, broadcast, otherIP, lying, ipv6, ByteBuffer(bytes: [1, 2, 3]), frame.getSlice(at: 0, length: 20)!] {
            XCTAssertEqual(p.frameFromLAN(f, now: t0), [])
        }
        XCTAssertEqual(p.counters.framesIgnored, 7)
        XCTAssertEqual(p.counters.framesToRemote, 1)
    }

    func testResolvesTheNextHopAndSendsWhatWaited() throws {
        var p = presence()
        let out1 = p.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.10", payload: 1), now: t0)
        XCTAssertEqual(requests(out1).map(\.0), [ip("192.168.77.10")])
        XCTAssertEqual(requests(out1).map(\.1), [ARPPacket.broadcast])
        let request = try ARPPacket(frame: frames(out1)[0])
        XCTAssertEqual(request.senderIP, ip("192.168.77.50"), "asks as the address, so the neighbour learns it too")
        // More packets wait without more requests; past maxQueued they are dropped.
        for i in 2...(LANPresence.maxQueued + 3) {
            XCTAssertEqual(p.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.10", payload: i), now: t0), [])
        }
        XCTAssertEqual(p.counters.queueFull, 3)
        let out2 = frames(
            p.frameFromLAN(arp(.reply, from: lanhostMAC, "192.168.77.10", to: "192.168.77.50", dest: mac), now: t0 + .milliseconds(5)))
        XCTAssertEqual(out2.count, LANPresence.maxQueued)
        for (i, f) in out2.enumerated() {
            XCTAssertEqual(Array(f[0..<6]), lanhostMAC)
            XCTAssertEqual(Array(f[6..<12]), mac)
            XCTAssertEqual(Array(f[12..<14]), [0x08, 0x00])
            XCTAssertEqual(f.count, 14 + 20 + i + 1, "in the order they came")
        }
        // Resolved: the next packet goes straight out.
        let out3 = frames(p.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.10"), now: t0 + .seconds(1)))
        XCTAssertEqual(out3.count, 1)
        XCTAssertEqual(Array(out3[0][0..<6]), lanhostMAC)
    }

    func testOffLinkGoesToTheGatewayOrIsUnreachable() throws {
        var p = presence()
        let out = p.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", "10.77.3.4"), now: t0)
        XCTAssertEqual(requests(out).map(\.0), [ip("192.168.77.1")])
        let sent = frames(p.frameFromLAN(arp(.reply, from: routerMAC, "192.168.77.1", to: "192.168.77.50", dest: mac), now: t0))
        XCTAssertEqual(sent.map { Array($0[0..<6]) }, [routerMAC])
        XCTAssertEqual(Array(sent[0][30..<34]), [10, 77, 3, 4], "the packet keeps its destination")

        var noGateway = presence(gateway: nil)
        let errors = packets(noGateway.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", "10.77.3.4", proto: 17), now: t0))
        XCTAssertEqual(errors.count, 1)
        let e = try XCTUnwrap(errors.first)
        XCTAssertEqual(e.getInteger(at: 20, as: UInt8.self), ICMPUnreachable.type)
        XCTAssertEqual(e.getInteger(at: 21, as: UInt8.self), ICMPUnreachable.net)
    }

    func testSilentNeighbourGetsHostUnreachableAfterThreeRequests() throws {
        var p = presence()
        let packet = PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.99", proto: 17)
        var asked = requests(p.packetToLAN(packet, now: t0)).count
        XCTAssertEqual(p.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.99", proto: 6), now: t0), [])
        var errors: [ByteBuffer] = []
        var now = t0
        for _ in 0..<20 {
            now = now + .milliseconds(250)
            let out = p.tick(now: now)
            asked += requests(out).count
            errors += packets(out)
        }
        XCTAssertEqual(asked, LANPresence.attempts)
        XCTAssertEqual(errors.count, 2, "one error per queued packet")
        let e = try XCTUnwrap(errors.first)
        let parsed = try IPPacket(parsing: e)
        XCTAssertEqual(parsed.source, ip("192.168.77.2"), "from this host, the router that gave up")
        XCTAssertEqual(parsed.destination, ip("192.168.77.50"))
        XCTAssertTrue(InternetChecksum.isValidIPv4Header(e, headerLength: 20))
        XCTAssertEqual(e.getInteger(at: 20, as: UInt8.self), 3)
        XCTAssertEqual(e.getInteger(at: 21, as: UInt8.self), ICMPUnreachable.host)
        XCTAssertEqual(InternetChecksum.compute(e, at: 20, length: e.readableBytes - 20), 0, "ICMP checksum")
        XCTAssertEqual(e.getBytes(at: 28, length: 20), packet.getBytes(at: 0, length: 20), "quotes the packet's header")
        XCTAssertEqual(p.counters.unreachable, 2)
        // Given up: the next packet asks again.
        XCTAssertEqual(requests(p.packetToLAN(packet, now: now)).count, 1)
    }

    func testForgedAndConflictingARPTeachesNothing() {
        var p = presence()
        // An unsolicited reply (nobody asked for 192.168.77.10) is not learned.
        XCTAssertEqual(p.frameFromLAN(arp(.reply, from: routerMAC, "192.168.77.10", to: "192.168.77.50", dest: mac), now: t0), [])
        XCTAssertNil(p.neighbour(ip("192.168.77.10"), now: t0))
        // While resolving, a reply claiming the address itself, or from outside the LAN, changes nothing.
        _ = p.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.10"), now: t0)
        XCTAssertEqual(p.frameFromLAN(arp(.reply, from: routerMAC, "192.168.77.50", to: "192.168.77.50", dest: mac), now: t0), [])
        XCTAssertEqual(p.frameFromLAN(arp(.reply, from: routerMAC, "10.0.0.1", to: "192.168.77.50", dest: mac), now: t0), [])
        XCTAssertNil(p.neighbour(ip("192.168.77.50"), now: t0))
        XCTAssertNil(p.neighbour(ip("10.0.0.1"), now: t0))
        // A request for the address from a host claiming the address: a conflict, not answered.
        XCTAssertEqual(
            p.frameFromLAN(arp(.request, from: routerMAC, "192.168.77.50", to: "192.168.77.50", dest: ARPPacket.broadcast), now: t0), [])
        // A broadcast sender MAC is a forgery.
        XCTAssertEqual(
            p.frameFromLAN(
                arp(.request, from: ARPPacket.broadcast, "192.168.77.10", to: "192.168.77.50", dest: ARPPacket.broadcast), now: t0), [])
        // A request for another address is none of its business.
        XCTAssertEqual(
            p.frameFromLAN(arp(.request, from: lanhostMAC, "192.168.77.10", to: "192.168.77.51", dest: ARPPacket.broadcast), now: t0), [])
        XCTAssertEqual(p.counters.arpIgnored, 6)
        XCTAssertEqual(p.counters.arpLearned, 0)
        // Once lanhost is known, neither a forged reply nor a forged request moves it to another MAC.
        _ = p.frameFromLAN(arp(.reply, from: lanhostMAC, "192.168.77.10", to: "192.168.77.50", dest: mac), now: t0)
        XCTAssertEqual(p.neighbour(ip("192.168.77.10"), now: t0), lanhostMAC)
        XCTAssertEqual(p.frameFromLAN(arp(.reply, from: routerMAC, "192.168.77.10", to: "192.168.77.50", dest: mac), now: t0), [])
        XCTAssertEqual(
            frames(p.frameFromLAN(arp(.request, from: routerMAC, "192.168.77.10", to: "192.168.77.50", dest: ARPPacket.broadcast), now: t0))
                .count, 1)
        XCTAssertEqual(p.neighbour(ip("192.168.77.10"), now: t0 + .seconds(1)), lanhostMAC)
        // A duplicate address probe (RFC 5227, sender 0.0.0.0) hears the address is taken.
        let probe = frames(
            p.frameFromLAN(arp(.request, from: lanhostMAC, "0.0.0.0", to: "192.168.77.50", dest: ARPPacket.broadcast), now: t0))
        XCTAssertEqual(probe, [p.announcement])
    }

    func testEntriesExpireAndAreConfirmedBeforeThey() {
        var p = presence()
        _ = p.frameFromLAN(arp(.request, from: lanhostMAC, "192.168.77.10", to: "192.168.77.50", dest: ARPPacket.broadcast), now: t0)
        let packet = PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.10")
        XCTAssertEqual(requests(p.packetToLAN(packet, now: t0 + .seconds(10))).count, 0)
        // Past three quarters of its lifetime, in use: one unicast request to confirm it, once a second.
        let refresh = requests(p.packetToLAN(packet, now: t0 + .seconds(46)))
        XCTAssertEqual(refresh.map(\.1), [lanhostMAC])
        XCTAssertEqual(requests(p.packetToLAN(packet, now: t0 + .seconds(46) + .milliseconds(100))).count, 0)
        // The answer renews it.
        _ = p.frameFromLAN(arp(.reply, from: lanhostMAC, "192.168.77.10", to: "192.168.77.50", dest: mac), now: t0 + .seconds(47))
        XCTAssertEqual(p.neighbour(ip("192.168.77.10"), now: t0 + .seconds(100)), lanhostMAC)
        // Unconfirmed for a lifetime: gone, and a packet asks again (broadcast).
        _ = p.tick(now: t0 + .seconds(108))
        XCTAssertNil(p.neighbour(ip("192.168.77.10"), now: t0 + .seconds(108)))
        XCTAssertEqual(requests(p.packetToLAN(packet, now: t0 + .seconds(108))).map(\.1), [ARPPacket.broadcast])
    }

    func testAFloodOfUnresolvableDestinationsIsBounded() {
        var p = presence()
        var asked = 0
        for i in 0..<1000 {
            let dst = "192.168.77.\(100 + i % 150)"
            asked += requests(p.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", dst), now: t0)).count
        }
        XCTAssertEqual(asked, LANPresence.maxResolving, "one request per neighbour, at most maxResolving at once")
        XCTAssertGreaterThan(p.counters.queueFull, 0)
        // Broadcast goes out as broadcast, no ARP.
        let out = frames(p.packetToLAN(PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.255", proto: 17), now: t0))
        XCTAssertEqual(out.map { Array($0[0..<6]) }, [ARPPacket.broadcast])
    }
}

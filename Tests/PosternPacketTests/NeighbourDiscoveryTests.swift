import NIOCore
import PosternPacket
import PosternWire
import XCTest

/// NDP messages (RFC 4861) against frames tcpdump captured between two Linux network namespaces
/// (fd00:77::10 at 02:00:00:00:00:0a resolving fd00:77::1 at 02:00:00:00:00:fe, and a kernel's
/// duplicate address detection probe): parsing, byte-exact building, and the rejections (hop limit,
/// checksum, options, multicast target, truncation).
final class NeighbourDiscoveryTests: XCTestCase {
    static func hex(_ s: String) -> [UInt8] { ICMPMessageTests.hex(s) }

    /// `ping -6 fd00:77::1` from fd00:77::10: the solicitation, to ff02::1:ff00:1.
    static let solicitation = hex(
        """
        3333 ff00 0001 0200 0000 000a 86dd 6000 0000 0020 3aff fd00 0077 0000 0000 0000
        0000 0000 0010 ff02 0000 0000 0000 0000 0001 ff00 0001 8700 7c93 0000 0000 fd00
        0077 0000 0000 0000 0000 0000 0001 0101 0200 0000 000a
        """)
    /// Linux's answer: solicited + override, the target link-layer address option.
    static let advertisement = hex(
        """
        0200 0000 000a 0200 0000 00fe 86dd 6000 0000 0020 3aff fd00 0077 0000 0000 0000
        0000 0000 0001 fd00 0077 0000 0000 0000 0000 0000 0010 8800 1a2c 6000 0000 fd00
        0077 0000 0000 0000 0000 0000 0001 0201 0200 0000 00fe
        """)
    /// Duplicate address detection of fe80::ff:fe00:fe: from ::, with a nonce option (type 14).
    static let probe = hex(
        """
        3333 ff00 00fe 0200 0000 00fe 86dd 6000 0000 0020 3aff 0000 0000 0000 0000 0000
        0000 0000 0000 ff02 0000 0000 0000 0000 0001 ff00 00fe 8700 4a76 0000 0000 fe80
        0000 0000 0000 0000 00ff fe00 00fe 0e01 319e 6621 8aec
        """)

    let hostMAC: [UInt8] = [2, 0, 0, 0, 0, 0x0a]
    let routerMAC: [UInt8] = [2, 0, 0, 0, 0, 0xfe]
    let host = IPAddress("fd00:77::10")!
    let router = IPAddress("fd00:77::1")!

    func testParsesTheCapturedSolicitationAndAdvertisement() throws {
        let ns = try NeighbourDiscovery(frame: Self.solicitation)
        XCTAssertEqual(ns.kind, .solicitation)
        XCTAssertEqual(ns.source, host)
        XCTAssertEqual(ns.destination, IPAddress("ff02::1:ff00:1")!)
        XCTAssertEqual(ns.target, router)
        XCTAssertEqual(ns.linkLayerAddress, hostMAC)
        XCTAssertEqual(ns.sourceMAC, hostMAC)
        let na = try NeighbourDiscovery(frame: Self.advertisement)
        XCTAssertEqual(na.kind, .advertisement)
        XCTAssertEqual(na.flags, NeighbourDiscovery.solicitedFlag | NeighbourDiscovery.overrideFlag)
        XCTAssertEqual(na.target, router)
        XCTAssertEqual(na.destination, host)
        XCTAssertEqual(na.linkLayerAddress, routerMAC)
        let dad = try NeighbourDiscovery(frame: Self.probe)
        XCTAssertTrue(dad.source.isUnspecified)
        XCTAssertNil(dad.linkLayerAddress, "a nonce option is not a link-layer address")
        XCTAssertTrue(NeighbourDiscovery.isNeighbourDiscovery(Self.solicitation))
        XCTAssertTrue(NeighbourDiscovery.isNeighbourDiscovery(Self.advertisement))
    }

    func testBuildsWhatLinuxSendsByteForByte() {
        // Answering the captured solicitation in fd00:77::1's name gives Linux's own advertisement.
        let ns = try! NeighbourDiscovery(frame: Self.solicitation)
        XCTAssertEqual(ns.answer(for: router, mac: routerMAC), Self.advertisement)
        XCTAssertNil(ns.answer(for: host, mac: routerMAC), "a solicitation for another address")
        XCTAssertNil(ns.answer(for: router, mac: hostMAC), "our own solicitation coming back")
        XCTAssertEqual(NeighbourDiscovery.solicitation(for: router, from: host, mac: hostMAC), Self.solicitation)
        // Unicast (a confirmation): to the neighbour's address and MAC.
        let unicast = NeighbourDiscovery.solicitation(for: router, from: host, mac: hostMAC, unicastMAC: routerMAC)
        XCTAssertEqual(Array(unicast[0..<6]), routerMAC)
        XCTAssertEqual(try NeighbourDiscovery(frame: unicast).destination, router)
    }

    func testAnnouncementAndProbeAnswer() throws {
        let announcement = NeighbourDiscovery.announcement(of: router, mac: routerMAC)
        XCTAssertEqual(Array(announcement[0..<6]), [0x33, 0x33, 0, 0, 0, 1])
        let parsed = try NeighbourDiscovery(frame: announcement)
        XCTAssertEqual(parsed.destination, NeighbourDiscovery.allNodes)
        XCTAssertEqual(parsed.flags, NeighbourDiscovery.overrideFlag, "unsolicited: no S flag")
        XCTAssertEqual(parsed.linkLayerAddress, routerMAC)
        XCTAssertEqual(parsed.target, router)
        // A probe for an address we own is answered to all nodes, so the prober gives it up.
        let fe80 = IPAddress("fe80::ff:fe00:fe")!
        let other: [UInt8] = [2, 0, 0, 0, 0, 0x99]
        XCTAssertEqual(
            try NeighbourDiscovery(frame: Self.probe).answer(for: fe80, mac: other), NeighbourDiscovery.announcement(of: fe80, mac: other))
    }

    func testSolicitedNodeAddressAndGroup() {
        XCTAssertEqual(NeighbourDiscovery.solicitedNode(IPAddress("fd00:77::50")!), IPAddress("ff02::1:ff00:50")!)
        XCTAssertEqual(NeighbourDiscovery.multicastMAC(IPAddress("ff02::1:ff12:3456")!), [0x33, 0x33, 0xff, 0x12, 0x34, 0x56])
    }

    func testRejectsWhatRFC4861SaysToDiscard() {
        var routed = Self.solicitation
        routed[21] = 254  // hop limit: a router forwarded it (checksum does not cover it)
        XCTAssertEqual(Self.error(routed), .hopLimit(254))
        routed[21] = 64
        XCTAssertEqual(Self.error(routed), .hopLimit(64))
        var corrupt = Self.solicitation
        corrupt[70] ^= 0x01  // one target bit
        XCTAssertEqual(Self.error(corrupt), .badChecksum)
        var code = Self.solicitation
        code[55] = 1
        XCTAssertEqual(Self.error(code), .notNeighbourDiscovery(type: 135, code: 1))
        // A zero-length option would loop forever if trusted: rejected (checksum fixed so it gets that far).
        var zero = Self.solicitation
        zero[79] = 0
        XCTAssertEqual(Self.error(Self.fixChecksum(zero)), .badOption)
        var long = Self.solicitation
        long[79] = 2  // 16 bytes claimed, 8 there
        XCTAssertEqual(Self.error(Self.fixChecksum(long)), .badOption)
        var multicast = Self.solicitation
        multicast[54 + 8] = 0xff
        XCTAssertEqual(Self.error(Self.fixChecksum(multicast)), .multicastTarget)
        var broadcastSource = Self.solicitation
        for i in 6..<12 { broadcastSource[i] = 0xff }
        XCTAssertEqual(Self.error(broadcastSource), .badSourceMAC)
        var nextHeader = Self.solicitation
        nextHeader[20] = 0  // hop-by-hop options first: not taken
        XCTAssertEqual(Self.error(nextHeader), .notIPv6ICMP)
        XCTAssertFalse(NeighbourDiscovery.isNeighbourDiscovery(nextHeader))
        // Every truncation fails cleanly; padding after the payload is ignored.
        for n in 0..<Self.solicitation.count {
            XCTAssertThrowsError(try NeighbourDiscovery(frame: Array(Self.solicitation.prefix(n))))
        }
        XCTAssertNoThrow(try NeighbourDiscovery(frame: Self.solicitation + [0, 0, 0, 0]))
    }

    func testUnreachableIsAValidICMPv6Error() throws {
        // An echo request fd00:77::50 -> fd00:77::99, quoted in an address-unreachable error from fd00:77::2.
        var echo: [UInt8] = [0x60, 0, 0, 0, 0, 8, 58, 64] + IPAddress("fd00:77::50")!.bytes + IPAddress("fd00:77::99")!.bytes
        echo += [128, 0, 0, 0, 0, 1, 0, 1]
        let error = try XCTUnwrap(NeighbourDiscovery.unreachable(for: ByteBuffer(bytes: echo), code: 3, from: IPAddress("fd00:77::2")!))
        let bytes = Array(error.readableBytesView)
        XCTAssertEqual(bytes.count, 40 + 8 + echo.count)
        XCTAssertEqual(Array(bytes[8..<24]), IPAddress("fd00:77::2")!.bytes)
        XCTAssertEqual(Array(bytes[24..<40]), IPAddress("fd00:77::50")!.bytes)
        XCTAssertEqual(Array(bytes[40..<42]), [1, 3])
        XCTAssertEqual(TransportChecksum.ipv6(error, ipBase: 0, upperLayer: 40, length: bytes.count - 40, nextHeader: 58), 0)
        XCTAssertEqual(Array(bytes[48...]), echo)
        // No error about an ICMPv6 error.
        var notAbout = echo
        notAbout[40] = 1
        XCTAssertNil(NeighbourDiscovery.unreachable(for: ByteBuffer(bytes: notAbout), code: 3, from: IPAddress("fd00:77::2")!))
    }

    static func error(_ frame: [UInt8]) -> NeighbourDiscovery.ParseError? {
        do {
            _ = try NeighbourDiscovery(frame: frame)
            return nil
        } catch { return error }
    }

    /// Recomputes the ICMPv6 checksum of a frame edited on purpose.
    static func fixChecksum(_ frame: [UInt8]) -> [UInt8] {
        var f = frame
        f[56] = 0
        f[57] = 0
        let packet = ByteBuffer(bytes: Array(f[14...]))
        let sum = TransportChecksum.ipv6(packet, ipBase: 0, upperLayer: 40, length: f.count - 54, nextHeader: 58)
        f[56] = UInt8(sum >> 8)
        f[57] = UInt8(sum & 0xff)
        return f
    }
}

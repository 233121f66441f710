import PosternWire
import XCTest

@testable import PosternNetlink

#if canImport(Glibc)
    import Glibc
#endif

/// Decodes hand-built rtnetlink messages, so the rarer shapes (peer addresses, ECMP and RFC 5549
/// routes, malformed replies) are covered without root. Numbers are kernel ABI constants from
/// <linux/rtnetlink.h>, <linux/if_link.h> and <linux/if_addr.h>.
final class NetlinkDecodingTests: XCTestCase {
    private let rtmNewLink: UInt16 = 16, rtmNewAddr: UInt16 = 20, rtmNewRoute: UInt16 = 24
    private let iflaAddress: UInt16 = 1, iflaIfname: UInt16 = 3, iflaMTU: UInt16 = 4
    private let ifaAddress: UInt16 = 1, ifaLocal: UInt16 = 2
    private let rtaOIF: UInt16 = 4, rtaGateway: UInt16 = 5, rtaMultipath: UInt16 = 9, rtaTable: UInt16 = 15,
        rtaVia: UInt16 = 18
    private let rtnUnicast: UInt8 = 1, rtnUnreachable: UInt8 = 7, rtTableMain: UInt8 = 254

    func testLinkWithoutHardwareAddressAndDownFlag() throws {
        let link = try LinkMessage(
            message(
                rtmNewLink, header: ifinfomsg(index: 7, flags: 0),
                [(iflaIfname, cString("tun0")), (iflaMTU, u32(1280))]))
        XCTAssertEqual(link, LinkMessage(index: 7, name: "tun0", mac: [], mtu: 1280, isUp: false))

        let up = try LinkMessage(
            message(
                rtmNewLink, header: ifinfomsg(index: 3, flags: 0x1),
                [(iflaIfname, cString("eth1")), (iflaMTU, u32(9000)), (iflaAddress, [2, 0, 0, 0, 0, 9])]))
        XCTAssertEqual(up, LinkMessage(index: 3, name: "eth1", mac: [2, 0, 0, 0, 0, 9], mtu: 9000, isUp: true))
    }

    func testLinkWithoutNameIsMalformed() {
        XCTAssertThrowsError(
            try LinkMessage(message(rtmNewLink, header: ifinfomsg(index: 7, flags: 0), [(iflaMTU, u32(1500))]))
        ) {
            guard case NetlinkError.malformedReply(let request, _) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(request, "RTM_GETLINK")
        }
    }

    func testTruncatedMessageIsMalformed() {
        // An RTM_NEWLINK with only 8 of the 16 bytes of ifinfomsg.
        XCTAssertThrowsError(try LinkMessage(message(rtmNewLink, header: [UInt8](repeating: 0, count: 8), []))) {
            XCTAssertTrue("\($0)".contains("too short"), "\($0)")
        }
    }

    func testPointToPointAddressPrefersLocalOverPeer() throws {
        let address = try XCTUnwrap(
            AddressMessage(
                message(
                    rtmNewAddr, header: ifaddrmsg(family: AF_INET, prefix: 32, index: 5),
                    [(ifaAddress, [10, 0, 0, 2]), (ifaLocal, [10, 0, 0, 1])])))
        XCTAssertEqual(address.interfaceIndex, 5)
        XCTAssertEqual(address.prefix.description, "10.0.0.1/32")
    }

    func testIPv6AddressAndForeignFamily() throws {
        let v6 = try XCTUnwrap(
            AddressMessage(
                message(
                    rtmNewAddr, header: ifaddrmsg(family: AF_INET6, prefix: 64, index: 2),
                    [(ifaAddress, IPAddress("fd00:9::7")!.bytes)])))
        XCTAssertEqual(v6.prefix.description, "fd00:9::7/64")
        // AF_PACKET (17) is neither IPv4 nor IPv6: skipped, not an error.
        XCTAssertNil(try AddressMessage(message(rtmNewAddr, header: ifaddrmsg(family: 17, prefix: 0, index: 2), [])))
        // An IPv4 address of IPv6 length is a misread.
        XCTAssertThrowsError(
            try AddressMessage(
                message(
                    rtmNewAddr, header: ifaddrmsg(family: AF_INET, prefix: 8, index: 2),
                    [(ifaLocal, IPAddress("::1")!.bytes)])))
    }

    func testMultipathDefaultRouteYieldsOneRoutePerNexthop() throws {
        let hops =
            rtnexthop(ifindex: 2, [(rtaGateway, [10, 9, 8, 1])]) + rtnexthop(ifindex: 3, [(rtaGateway, [10, 9, 6, 1])])
            + rtnexthop(ifindex: 4, [])
        let route = try XCTUnwrap(
            RouteMessage(
                message(
                    rtmNewRoute, header: rtmsg(family: AF_INET, dstLen: 0, table: rtTableMain, type: rtnUnicast),
                    [(rtaTable, u32(254)), (rtaMultipath, hops)])))
        XCTAssertEqual(
            route.defaultRoutes,
            [
                .init(
                    destination: .init(address: .anyV4, prefixLength: 0), gateway: IPAddress("10.9.8.1"),
                    interfaceIndex: 2),
                .init(
                    destination: .init(address: .anyV4, prefixLength: 0), gateway: IPAddress("10.9.6.1"),
                    interfaceIndex: 3),
                .init(destination: .init(address: .anyV4, prefixLength: 0), gateway: nil, interfaceIndex: 4),
            ])
    }

    func testIPv4RouteViaIPv6Neighbour() throws {
        let via = withUnsafeBytes(of: UInt16(AF_INET6)) { Array($0) } + IPAddress("fe80::1")!.bytes
        let route = try XCTUnwrap(
            RouteMessage(
                message(
                    rtmNewRoute, header: rtmsg(family: AF_INET, dstLen: 0, table: rtTableMain, type: rtnUnicast),
                    [(rtaVia, via), (rtaOIF, u32(6))])))
        XCTAssertEqual(route.defaultRoutes.map(\.gateway), [IPAddress("fe80::1")])
        XCTAssertEqual(route.defaultRoutes.map(\.interfaceIndex), [6])
    }

    func testNonDefaultRoutesAreLeftOut() throws {
        let cases: [(dstLen: UInt8, table: UInt8, tableAttribute: UInt32?, type: UInt8)] = [
            (24, rtTableMain, nil, rtnUnicast),  // not a default
            (0, 100, nil, rtnUnicast),  // policy-routing table
            (0, 252, 1000, rtnUnicast),  // table id above 255 only in RTA_TABLE (rtm_table says RT_TABLE_COMPAT)
            (0, rtTableMain, nil, rtnUnreachable),  // unreachable default
        ]
        for item in cases {
            var attributes: [(UInt16, [UInt8])] = [(rtaGateway, [10, 0, 0, 1]), (rtaOIF, u32(2))]
            if let table = item.tableAttribute { attributes.append((rtaTable, u32(table))) }
            let route = try XCTUnwrap(
                RouteMessage(
                    message(
                        rtmNewRoute,
                        header: rtmsg(family: AF_INET, dstLen: item.dstLen, table: item.table, type: item.type),
                        attributes)))
            XCTAssertEqual(route.defaultRoutes, [], "\(item)")
        }
    }

    func testMessageKeepsLengthAndType() {
        let copy = message(rtmNewLink, header: ifinfomsg(index: 1, flags: 0), [(iflaIfname, cString("lo"))])
        XCTAssertEqual(copy.length, 16 + 16 + 8)  // nlmsghdr + ifinfomsg + "lo\0" padded to 4
        XCTAssertEqual(copy.type, rtmNewLink)
    }

    // MARK: - Message building (host byte order, 4-byte alignment, as the kernel writes them)

    private func message(_ type: UInt16, header: [UInt8], _ attributes: [(UInt16, [UInt8])]) -> NetlinkMessage {
        var body = padded(header)
        for (type, payload) in attributes { body += attribute(type, payload) }
        let length = UInt32(16 + body.count)
        // nlmsghdr: len, type, flags, seq, pid
        return NetlinkMessage(bytes: u32(length) + u16(type) + u16(0x2) + u32(1) + u32(0) + body)
    }

    private func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        padded(u16(UInt16(4 + payload.count)) + u16(type) + payload)
    }

    private func rtnexthop(ifindex: Int32, _ attributes: [(UInt16, [UInt8])]) -> [UInt8] {
        let nested = attributes.flatMap { attribute($0.0, $0.1) }
        return u16(UInt16(8 + nested.count)) + [0, 0] + u32(UInt32(bitPattern: ifindex)) + nested
    }

    private func ifinfomsg(index: Int32, flags: UInt32) -> [UInt8] {
        [UInt8(AF_UNSPEC), 0] + u16(1) + u32(UInt32(bitPattern: index)) + u32(flags) + u32(0)
    }

    private func ifaddrmsg(family: Int32, prefix: UInt8, index: UInt32) -> [UInt8] {
        [UInt8(family), prefix, 0, 0] + u32(index)
    }

    private func rtmsg(family: Int32, dstLen: UInt8, table: UInt8, type: UInt8) -> [UInt8] {
        // family, dst_len, src_len, tos, table, protocol, scope, type, flags
        [UInt8(family), dstLen, 0, 0, table, 3, 0, type] + u32(0)
    }

    private func padded(_ bytes: [UInt8]) -> [UInt8] { bytes + [UInt8](repeating: 0, count: (4 - bytes.count % 4) % 4) }
    private func u16(_ value: UInt16) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }
    private func u32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }
    private func cString(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }
}

import PosternWire
import XCTest

@testable import PosternNetlink

/// The IPv6 requests of TUN mode and the neighbour resolution request, byte for byte against the
/// kernel's layouts (as NetlinkRequestTests): `ip -6 route add ADDR/128 dev NAME`, `ip -6 neigh add
/// proxy ADDR dev NAME`, `ip neigh replace ADDR dev NAME use`.
final class NetlinkIPv6RequestTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix
    // NLM_F_REQUEST 0x1, NLM_F_ACK 0x4, NLM_F_EXCL 0x200, NLM_F_CREATE 0x400, NLM_F_REPLACE 0x100.
    let create: UInt16 = 0x1 | 0x4 | 0x200 | 0x400

    func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    func header(length: Int, type: UInt16, flags: UInt16, sequence: UInt32) -> [UInt8] {
        u32(UInt32(length)) + u16(type) + u16(flags) + u32(sequence) + u32(0)
    }
    func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let padded = (payload.count + 3) & ~3
        return u16(UInt16(4 + payload.count)) + u16(type) + payload + [UInt8](repeating: 0, count: padded - payload.count)
    }
    let remote = IPAddress("fd00:77::50")!

    func testProxyNDPEntry() {
        let r = NetlinkRequest.proxyNeighbour(add: true, index: 2, interface: "eth0", address: remote, sequence: 5)
        // ndmsg: AF_INET6 10, 3 pad bytes, ifindex 2, state NUD_PERMANENT 0x80, flags NTF_PROXY 0x08, type 0.
        let family: [UInt8] = [10, 0, 0, 0] + u32(2) + u16(0x80) + [0x08, 0]
        XCTAssertEqual(r.bytes, header(length: 48, type: 28, flags: create, sequence: 5) + family + attribute(1, remote.bytes))
    }

    func testHostRouteToTheDevice() {
        let r = NetlinkRequest.route(
            add: true, index: 9, interface: "ptm-acme", destination: Prefix(address: remote, prefixLength: 128), sequence: 8)
        // rtmsg: AF_INET6, dst_len 128, src_len 0, tos 0, table main 254, protocol static 4, scope link 253,
        // type unicast 1, flags 0; RTA_DST 1, RTA_OIF 4.
        let family: [UInt8] = [10, 128, 0, 0, 254, 4, 253, 1] + u32(0)
        XCTAssertEqual(
            r.bytes,
            header(length: 16 + 12 + 20 + 8, type: 24, flags: create, sequence: 8) + family + attribute(1, remote.bytes)
                + attribute(4, u32(9)))
    }

    func testResolveNeighbour() {
        let r = NetlinkRequest.resolveNeighbour(index: 3, interface: "eth0", address: IPAddress("192.168.77.50")!, sequence: 4)
        // NLM_F_CREATE | NLM_F_REPLACE, no NLM_F_EXCL; ndmsg: AF_INET, ifindex 3, state NUD_NONE 0,
        // flags NTF_USE 0x01, type 0.
        let family: [UInt8] = [2, 0, 0, 0] + u32(3) + u16(0) + [0x01, 0]
        XCTAssertEqual(
            r.bytes,
            header(length: 36, type: 28, flags: 0x1 | 0x4 | 0x400 | 0x100, sequence: 4) + family + attribute(1, [192, 168, 77, 50]))
        XCTAssertEqual(r.summary, "ask who has 192.168.77.50 on eth0")
    }
}

extension NetlinkIPv6RequestTests {
    func testForgetNeighbour() {
        let r = NetlinkRequest.forgetNeighbour(index: 3, interface: "eth0", address: remote, sequence: 6)
        // RTM_DELNEIGH 29, NLM_F_REQUEST | NLM_F_ACK; ndmsg: AF_INET6, ifindex 3, state 0, flags 0.
        let family: [UInt8] = [10, 0, 0, 0] + u32(3) + u16(0) + [0, 0]
        XCTAssertEqual(r.bytes, header(length: 48, type: 29, flags: 0x1 | 0x4, sequence: 6) + family + attribute(1, remote.bytes))
    }
}

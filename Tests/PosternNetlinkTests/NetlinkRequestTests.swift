import PosternWire
import XCTest

@testable import PosternNetlink

/// The change requests TUN mode sends, byte for byte against the kernel's layouts (numbers from
/// <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>, <linux/neighbour.h>;
/// netlink headers are in host byte order, addresses in network order): what `ip` sends for
/// `ip addr add`, `ip route add`, `ip neigh add proxy`, `ip link set up mtu` and `ip link del`.
final class NetlinkRequestTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix
    // NLM_F_REQUEST 0x1, NLM_F_ACK 0x4, NLM_F_EXCL 0x200, NLM_F_CREATE 0x400.
    let create: UInt16 = 0x1 | 0x4 | 0x200 | 0x400
    let plain: UInt16 = 0x1 | 0x4

    func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }

    func header(length: Int, type: UInt16, flags: UInt16, sequence: UInt32) -> [UInt8] {
        u32(UInt32(length)) + u16(type) + u16(flags) + u32(sequence) + u32(0)
    }

    func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let padded = (payload.count + 3) & ~3
        return u16(UInt16(4 + payload.count)) + u16(type) + payload + [UInt8](repeating: 0, count: padded - payload.count)
    }

    func testAddAddress() {
        let r = NetlinkRequest.address(
            add: true, index: 7, interface: "pts-acme", prefix: Prefix(parsing: "192.168.77.50/32")!, sequence: 42)
        // ifaddrmsg: family AF_INET 2, prefix length 32, flags 0, scope RT_SCOPE_UNIVERSE 0, index 7.
        let family: [UInt8] = [2, 32, 0, 0] + u32(7)
        let attrs = attribute(2, [192, 168, 77, 50]) + attribute(1, [192, 168, 77, 50])  // IFA_LOCAL, IFA_ADDRESS
        XCTAssertEqual(r.bytes, header(length: 40, type: 20, flags: create, sequence: 42) + family + attrs)  // RTM_NEWADDR
        XCTAssertEqual(r.summary, "add address 192.168.77.50/32 to pts-acme")
        let d = NetlinkRequest.address(
            add: false, index: 7, interface: "pts-acme", prefix: Prefix(parsing: "192.168.77.50/32")!, sequence: 43)
        XCTAssertEqual(d.bytes, header(length: 40, type: 21, flags: plain, sequence: 43) + family + attrs)  // RTM_DELADDR
    }

    func testAddRouteUsesTheNetworkAddress() {
        let r = NetlinkRequest.route(
            add: true, index: 9, interface: "pts-acme", destination: Prefix(parsing: "192.168.77.50/24")!, sequence: 1)
        // rtmsg: AF_INET, dst_len 24, src_len 0, tos 0, RT_TABLE_MAIN 254, RTPROT_STATIC 4, RT_SCOPE_LINK 253,
        // RTN_UNICAST 1, flags 0.
        let family: [UInt8] = [2, 24, 0, 0, 254, 4, 253, 1] + u32(0)
        let attrs = attribute(1, [192, 168, 77, 0]) + attribute(4, u32(9))  // RTA_DST, RTA_OIF
        XCTAssertEqual(r.bytes, header(length: 44, type: 24, flags: create, sequence: 1) + family + attrs)  // RTM_NEWROUTE
        let d = NetlinkRequest.route(
            add: false, index: 9, interface: "pts-acme", destination: Prefix(parsing: "192.168.77.0/24")!, sequence: 2)
        XCTAssertEqual(d.bytes, header(length: 44, type: 25, flags: plain, sequence: 2) + family + attrs)  // RTM_DELROUTE
    }

    func testProxyNeighbour() {
        let r = NetlinkRequest.proxyNeighbour(add: true, index: 2, interface: "eth0", address: IPAddress("192.168.77.50")!, sequence: 5)
        // ndmsg: AF_INET, 3 pad bytes, ifindex 2, state NUD_PERMANENT 0x80, flags NTF_PROXY 0x08, type 0.
        let family: [UInt8] = [2, 0, 0, 0] + u32(2) + u16(0x80) + [0x08, 0]
        let attrs = attribute(1, [192, 168, 77, 50])  // NDA_DST
        XCTAssertEqual(r.bytes, header(length: 36, type: 28, flags: create, sequence: 5) + family + attrs)  // RTM_NEWNEIGH
        XCTAssertEqual(r.summary, "add a proxy neighbour entry for 192.168.77.50 on eth0")
        let d = NetlinkRequest.proxyNeighbour(add: false, index: 2, interface: "eth0", address: IPAddress("192.168.77.50")!, sequence: 6)
        XCTAssertEqual(d.bytes, header(length: 36, type: 29, flags: plain, sequence: 6) + family + attrs)  // RTM_DELNEIGH
    }

    func testLinkUpAndDelete() {
        let up = NetlinkRequest.setLinkUp(index: 11, name: "ptm-acme", mtu: 1400, sequence: 3)
        // ifinfomsg: AF_UNSPEC, pad, type 0, index 11, flags IFF_UP, change IFF_UP; IFLA_MTU 4.
        let info: [UInt8] = [0, 0] + u16(0) + u32(11) + u32(1) + u32(1)
        XCTAssertEqual(up.bytes, header(length: 40, type: 16, flags: plain, sequence: 3) + info + attribute(4, u32(1400)))
        let del = NetlinkRequest.deleteLink(name: "ptm-acme", sequence: 4)
        let zero = [UInt8](repeating: 0, count: 16)
        // IFLA_IFNAME 3, NUL-terminated: length 13, padded to 16.
        XCTAssertEqual(
            del.bytes, header(length: 48, type: 17, flags: plain, sequence: 4) + zero + attribute(3, Array("ptm-acme".utf8) + [0]))
    }

    func testErrorsInWords() {
        XCTAssertEqual(
            "\(NetlinkError.requestFailed("add address 192.168.77.50/32 to eth0", errno: EEXIST))",
            "cannot add address 192.168.77.50/32 to eth0: it is already there (in use by someone else?) (errno 17)")
        XCTAssertEqual("\(NetlinkError.requestFailed("bring x up", errno: ENODEV))", "cannot bring x up: no such device (errno 19)")
        XCTAssertEqual("\(NetlinkError.noSuchInterface("eth9"))", "no such device: eth9")
        XCTAssertTrue(NetlinkError.requestFailed("x", errno: ESRCH).isAlreadyGone)
        XCTAssertFalse(NetlinkError.requestFailed("x", errno: EPERM).isAlreadyGone)
    }
}

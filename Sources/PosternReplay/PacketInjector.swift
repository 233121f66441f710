import Foundation
import Glibc

/// Sends whole IPv4 and IPv6 packets, header included, for replay in TUN mode. Needs CAP_NET_RAW.
///
/// On an interface (`interface` given), through an AF_PACKET socket: the packet leaves that interface
/// byte for byte, with no routing and nothing filled in — on a tun device as it is, on Ethernet to the
/// neighbour that owns the packet's destination (from the kernel's neighbour table, so that address
/// must be on the link and resolved). Without an interface, through a raw IP socket (IPPROTO_RAW,
/// which implies IP_HDRINCL): the kernel routes the packet, and it also fills in the header checksum
/// and any IP identification of 0, so a recorded ID of 0 does not survive that way. IPv6 goes the same
/// two ways: on a tun device through the AF_PACKET socket; routed through an IPv6 raw socket
/// (IPPROTO_RAW implies IPV6_HDRINCL, and IPv6 has no header checksum or ID to fill in, so it leaves
/// as sent). On an Ethernet interface IPv6 is refused with a pointer to the routed way: the neighbour
/// table for IPv6 is not in /proc.
public final class PacketInjector {
    private let fd: Int32
    private let interface: String?
    /// The interface's index for `sockaddr_ll` (Glibc's module map has no <linux/if_packet.h>).
    private var ifindex: Int32 = 0
    /// ETH_P_IP.
    private static let ipProtocol: UInt16 = 0x0800
    /// ETH_P_IPV6.
    private static let ip6Protocol: UInt16 = 0x86dd
    /// Without an interface: the IPv6 raw socket, opened with the first IPv6 packet.
    private var fd6: Int32 = -1
    private let ethernet: Bool

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public init(interface: String? = nil) throws(Failure) {
        self.interface = interface
        if let interface {
            let index = if_nametoindex(interface)
            guard index != 0 else { throw Failure(description: "no interface '\(interface)'") }
            let type = (try? String(contentsOfFile: "/sys/class/net/\(interface)/type", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            // ARPHRD_ETHER 1; ARPHRD_NONE 65534 (tun devices): nothing else is known here.
            guard type == "1" || type == "65534" else {
                throw Failure(description: "interface '\(interface)' is neither Ethernet nor a tun device (type \(type ?? "?"))")
            }
            ethernet = type == "1"
            fd = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue), Int32(Self.ipProtocol.bigEndian))
            ifindex = Int32(index)
        } else {
            ethernet = false
            fd = socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW))
        }
        guard fd >= 0 else { throw Failure(description: "raw socket: \(String(cString: strerror(errno))) (needs CAP_NET_RAW)") }
    }

    deinit {
        close(fd)
        if fd6 >= 0 { close(fd6) }
    }

    /// Sends one IPv4 or IPv6 packet.
    public func send(_ packet: [UInt8]) throws(Failure) {
        if packet.count >= 40 && packet[0] >> 4 == 6 { return try send6(packet) }
        guard packet.count >= 20, packet[0] >> 4 == 4 else { throw Failure(description: "not an IPv4 or IPv6 packet") }
        let sent: Int
        if interface != nil {
            // struct sockaddr_ll, 20 bytes: family, protocol (network order), ifindex, hatype, pkttype,
            // halen, addr[8].
            var to = [UInt8](repeating: 0, count: 20)
            withUnsafeBytes(of: UInt16(AF_PACKET)) { to.replaceSubrange(0..<2, with: $0) }
            withUnsafeBytes(of: Self.ipProtocol.bigEndian) { to.replaceSubrange(2..<4, with: $0) }
            withUnsafeBytes(of: ifindex) { to.replaceSubrange(4..<8, with: $0) }
            if ethernet {
                to[11] = 6
                to.replaceSubrange(12..<18, with: try neighbour(Array(packet[16..<20])))
            }
            sent = packet.withUnsafeBytes { bytes in
                to.withUnsafeBytes { a in
                    sendto(fd, bytes.baseAddress, bytes.count, 0, a.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(a.count))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = packet[16..<20].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            sent = packet.withUnsafeBytes { bytes in
                withUnsafePointer(to: &address) { a in
                    a.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
        }
        if sent != packet.count {
            throw Failure(description: "sending a \(packet.count)-byte packet: \(String(cString: strerror(errno)))")
        }
    }

    private func send6(_ packet: [UInt8]) throws(Failure) {
        let sent: Int
        if let interface {
            guard !ethernet else {
                throw Failure(
                    description:
                        "IPv6 on the Ethernet interface '\(interface)': inject it routed (without --inject-on); its header leaves as sent that way"
                )
            }
            var to = [UInt8](repeating: 0, count: 20)
            withUnsafeBytes(of: UInt16(AF_PACKET)) { to.replaceSubrange(0..<2, with: $0) }
            withUnsafeBytes(of: Self.ip6Protocol.bigEndian) { to.replaceSubrange(2..<4, with: $0) }
            withUnsafeBytes(of: ifindex) { to.replaceSubrange(4..<8, with: $0) }
            sent = packet.withUnsafeBytes { bytes in
                to.withUnsafeBytes { a in
                    sendto(fd, bytes.baseAddress, bytes.count, 0, a.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(a.count))
                }
            }
        } else {
            if fd6 < 0 {
                fd6 = socket(AF_INET6, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW))
                guard fd6 >= 0 else {
                    throw Failure(description: "IPv6 raw socket: \(String(cString: strerror(errno))) (needs CAP_NET_RAW)")
                }
            }
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: packet[24..<40]) }
            sent = packet.withUnsafeBytes { bytes in
                withUnsafePointer(to: &address) { a in
                    a.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd6, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                    }
                }
            }
        }
        if sent != packet.count {
            throw Failure(description: "sending a \(packet.count)-byte IPv6 packet: \(String(cString: strerror(errno)))")
        }
    }

    private var neighbours: [[UInt8]: [UInt8]] = [:]

    /// The MAC address of an on-link IPv4 address on `interface`, from /proc/net/arp (complete entries).
    private func neighbour(_ address: [UInt8]) throws(Failure) -> [UInt8] {
        if let known = neighbours[address] { return known }
        let text = address.map(String.init).joined(separator: ".")
        let table = (try? String(contentsOfFile: "/proc/net/arp", encoding: .utf8)) ?? ""
        for line in table.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            // IP address, HW type, Flags (0x2: complete), HW address, Mask, Device
            guard f.count >= 6, f[0] == text, f[5] == interface ?? "", f[2] != "0x0" else { continue }
            let mac = f[3].split(separator: ":").compactMap { UInt8($0, radix: 16) }
            if mac.count == 6 {
                neighbours[address] = mac
                return mac
            }
        }
        throw Failure(
            description: "no neighbour entry for \(text) on \(interface ?? ""): it must be on the link and resolved (ping it once)")
    }
}

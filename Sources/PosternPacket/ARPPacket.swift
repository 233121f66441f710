import PosternWire

/// An ARP packet for IPv4 over Ethernet (RFC 826) in its Ethernet frame: the first piece of the raw
/// LAN presence of issue 11, where the mediator answers ARP for the remote side's address itself.
/// Pure: frames in, values and frames out. A frame may carry padding after the 28 ARP bytes (the
/// Ethernet minimum is 60); it is ignored.
public struct ARPPacket: Hashable, Sendable {
    public enum Operation: UInt16, Hashable, Sendable {
        case request = 1
        case reply = 2
    }

    public enum ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        case tooShort(Int)
        case notARP(etherType: UInt16)
        /// Not Ethernet hardware with IPv4 protocol addresses of the usual sizes.
        case unsupported
        case badOperation(UInt16)
        /// A sender hardware address no host has (broadcast, multicast, zero): a forged packet.
        case badSenderMAC

        public var description: String {
            switch self {
            case .tooShort(let n): return "\(n) bytes is too short for an ARP frame"
            case .notARP(let t): return "ethertype 0x\(String(t, radix: 16)) is not ARP"
            case .unsupported: return "not ARP for IPv4 over Ethernet"
            case .badOperation(let op): return "ARP operation \(op)"
            case .badSenderMAC: return "the sender hardware address is not a unicast address"
            }
        }
    }

    public static let etherType: UInt16 = 0x0806
    /// Destination, source, ethertype: 14 bytes; then 28 bytes of ARP.
    public static let frameLength = 14 + 28
    public static let broadcast: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]

    public var operation: Operation
    public var senderMAC: [UInt8]
    public var senderIP: IPAddress
    public var targetMAC: [UInt8]
    public var targetIP: IPAddress

    public init(operation: Operation, senderMAC: [UInt8], senderIP: IPAddress, targetMAC: [UInt8], targetIP: IPAddress) {
        self.operation = operation
        self.senderMAC = senderMAC
        self.senderIP = senderIP
        self.targetMAC = targetMAC
        self.targetIP = targetIP
    }

    /// Parses an Ethernet frame holding ARP.
    public init(frame: [UInt8]) throws(ParseError) {
        guard frame.count >= Self.frameLength else { throw .tooShort(frame.count) }
        func u16(_ i: Int) -> UInt16 { UInt16(frame[i]) << 8 | UInt16(frame[i + 1]) }
        func ipv4(_ i: Int) -> IPAddress {
            .v4(UInt32(frame[i]) << 24 | UInt32(frame[i + 1]) << 16 | UInt32(frame[i + 2]) << 8 | UInt32(frame[i + 3]))
        }
        guard u16(12) == Self.etherType else { throw .notARP(etherType: u16(12)) }
        guard u16(14) == 1, u16(16) == 0x0800, frame[18] == 6, frame[19] == 4 else { throw .unsupported }
        guard let operation = Operation(rawValue: u16(20)) else { throw .badOperation(u16(20)) }
        let senderMAC = Array(frame[22..<28])
        guard Self.isUnicast(senderMAC) else { throw .badSenderMAC }
        self.init(
            operation: operation, senderMAC: senderMAC, senderIP: ipv4(28), targetMAC: Array(frame[32..<38]), targetIP: ipv4(38))
    }

    /// A MAC address a single host can own: not all zero, not broadcast or multicast (group bit).
    public static func isUnicast(_ mac: [UInt8]) -> Bool {
        mac.count == 6 && mac[0] & 0x01 == 0 && mac.contains { $0 != 0 }
    }

    /// The Ethernet frame of this packet, from `source` to `destination`.
    public func frame(from source: [UInt8], to destination: [UInt8]) -> [UInt8] {
        func bytes(_ a: IPAddress) -> [UInt8] {
            guard case .v4(let v) = a else { return [0, 0, 0, 0] }
            return [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
        }
        var f = destination + source + [0x08, 0x06]
        f += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, UInt8(operation.rawValue)]
        f += senderMAC + bytes(senderIP) + targetMAC + bytes(targetIP)
        return f
    }

    /// The reply frame the owner of `address` at `mac` sends to this request, or nil when this is not
    /// a request for `address` (a reply, someone else's address, or our own request coming back).
    public func answer(for address: IPAddress, mac: [UInt8]) -> [UInt8]? {
        guard operation == .request, targetIP == address, senderMAC != mac else { return nil }
        return ARPPacket(operation: .reply, senderMAC: mac, senderIP: address, targetMAC: senderMAC, targetIP: senderIP)
            .frame(from: mac, to: senderMAC)
    }

    /// A gratuitous ARP (a broadcast request for one's own address, RFC 5227 announcement) that makes
    /// the LAN's hosts update their caches to `mac` for `address`.
    public static func announcement(of address: IPAddress, mac: [UInt8]) -> [UInt8] {
        ARPPacket(operation: .request, senderMAC: mac, senderIP: address, targetMAC: [0, 0, 0, 0, 0, 0], targetIP: address)
            .frame(from: mac, to: broadcast)
    }
}

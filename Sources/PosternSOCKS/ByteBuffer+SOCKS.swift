import NIOCore
import PosternWire

/// The address fields SOCKS5 shares between requests, replies and the UDP header (RFC 1928 §5):
/// ATYP (1 = IPv4, 3 = domain name, 4 = IPv6), the address, then the port in network order.
public enum SOCKSAddressType {
    public static let ipv4: UInt8 = 1
    public static let domainName: UInt8 = 3
    public static let ipv6: UInt8 = 4
}

/// Why an address field could not be read.
public enum SOCKSAddressError: Error, Hashable, Sendable {
    /// An ATYP other than 1, 3 or 4: reply 8.
    case unsupportedType(UInt8)
    /// A domain name of length 0, or with bytes no host name has (controls, NUL, invalid UTF-8).
    case invalidName
}

extension ByteBuffer {
    /// Reads ATYP, address and port; nil (nothing consumed) when the bytes are not all there yet.
    public mutating func readSOCKSAddress() throws(SOCKSAddressError) -> Endpoint? {
        let save = self
        guard let type = readInteger(as: UInt8.self) else { return nil }
        let host: Host
        switch type {
        case SOCKSAddressType.ipv4, SOCKSAddressType.ipv6:
            let count = type == SOCKSAddressType.ipv4 ? 4 : 16
            guard let bytes = readBytes(length: count), let ip = IPAddress(bytes: bytes) else {
                self = save
                return nil
            }
            host = .ip(ip)
        case SOCKSAddressType.domainName:
            guard let length = readInteger(as: UInt8.self), let bytes = readBytes(length: Int(length)) else {
                self = save
                return nil
            }
            guard let name = Self.hostName(bytes) else {
                self = save
                throw .invalidName
            }
            host = Host(name)
        default:
            self = save
            throw .unsupportedType(type)
        }
        guard let port = readInteger(as: UInt16.self) else {
            self = save
            return nil
        }
        return Endpoint(host: host, port: port)
    }

    /// Writes ATYP, address and port. A name longer than 255 bytes cannot be written (never the case
    /// for what this server sends: it replies with addresses).
    @discardableResult
    public mutating func writeSOCKSAddress(_ endpoint: Endpoint) -> Int {
        var n = 0
        switch endpoint.host {
        case .ip(let ip):
            n += writeInteger(ip.isIPv6 ? SOCKSAddressType.ipv6 : SOCKSAddressType.ipv4)
            n += writeBytes(ip.bytes)
        case .name(let name):
            let bytes = Array(name.utf8.prefix(255))
            n += writeInteger(SOCKSAddressType.domainName)
            n += writeInteger(UInt8(bytes.count))
            n += writeBytes(bytes)
        }
        n += writeInteger(endpoint.port)
        return n
    }

    /// A name as the mediator's resolver may see it: 1-255 bytes of UTF-8 without control characters
    /// (a NUL would cut it short in getaddrinfo, a newline would forge log lines).
    static func hostName(_ bytes: [UInt8]) -> String? {
        guard !bytes.isEmpty, !bytes.contains(where: { $0 < 0x20 || $0 == 0x7f }) else { return nil }
        guard let s = String(validating: bytes, as: UTF8.self) else { return nil }
        return s
    }
}

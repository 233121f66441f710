import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// Reads the mediator host's network environment (interfaces, addresses, default routes) from the
/// kernel over rtnetlink, the same source `ip` uses, instead of parsing command output whose format
/// varies between tools and versions.
///
/// Everything is read from the calling thread's network namespace. The call blocks for the few
/// milliseconds three dumps take; call it off any event loop.
public enum NetlinkEnvironment {
    public static func read(softwareVersion: String) throws -> MediatorEnvironment {
        let hostname = try readHostname()
        let links = try NetlinkSocket.dump(LinkMessage.request).map { try LinkMessage($0) }
        let addresses = try NetlinkSocket.dump(AddressMessage.request).compactMap { try AddressMessage($0) }
        let routes = try NetlinkSocket.dump(RouteMessage.request).compactMap { try RouteMessage($0) }

        // The dumps are separate snapshots: an address whose interface vanished in between is
        // dropped, and an interface that appeared late simply shows no addresses.
        var addressesByIndex: [UInt32: [MediatorEnvironment.AddressPrefix]] = [:]
        for address in addresses {
            addressesByIndex[address.interfaceIndex, default: []].append(address.prefix)
        }
        // The kernel's link dump order is an implementation detail; report interfaces by index.
        let interfaces = links.sorted { $0.index < $1.index }.map {
            $0.interface(addresses: addressesByIndex[$0.index] ?? [])
        }
        return MediatorEnvironment(
            hostname: hostname, softwareVersion: softwareVersion, capabilities: probeCapabilities(),
            interfaces: interfaces, routes: routes.flatMap(\.defaultRoutes))
    }

    static func readHostname() throws -> String {
        // HOST_NAME_MAX is 64 on Linux; a larger buffer plus forced termination covers truncation.
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else {
            throw NetlinkError.callFailed(call: "gethostname", errno: errno)
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// What the mediator may do here, found by trying: permissions (root, CAP_NET_ADMIN/RAW,
    /// container device policy) are easier to test than to compute. Descriptors are closed at once.
    static func probeCapabilities() -> MediatorEnvironment.Capabilities {
        var capabilities: MediatorEnvironment.Capabilities = []
        let tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC)
        if tun >= 0 {
            close(tun)
            capabilities.insert(.tun)
        }
        let raw = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMP))
        if raw >= 0 {
            close(raw)
            capabilities.insert(.rawSockets)
        }
        return capabilities
    }
}

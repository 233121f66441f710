/// Why a packet device refused a read or a write.
public enum PacketDeviceError: Error, Hashable, Sendable, CustomStringConvertible {
    case closed
    /// A packet longer than the MTU; `written` packets before it went out.
    case packetTooLarge(size: Int, mtu: Int, written: Int)
    /// A second read while one is waiting: a device has one reader.
    case concurrentRead

    public var description: String {
        switch self {
        case .closed: return "the packet device is closed"
        case .packetTooLarge(let size, let mtu, let written):
            return "a \(size)-byte packet does not fit the MTU of \(mtu) (\(written) packets written before it)"
        case .concurrentRead: return "the packet device already has a read waiting"
        }
    }
}

/// Why a capture could not be read: always names the file, the packet (1-based, as Wireshark counts)
/// when one is at fault, and the reason, so a user can look at the very packet in another tool.
public struct CaptureError: Error, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    /// 1-based number of the packet being read, nil for the file as a whole (header, link type).
    public var packet: Int?
    public var reason: String

    public init(file: String, packet: Int? = nil, reason: String) {
        self.file = file
        self.packet = packet
        self.reason = reason
    }

    public var description: String {
        if let packet { return "\(file): packet \(packet): \(reason)" }
        return "\(file): \(reason)"
    }
}

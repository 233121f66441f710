import NIOCore
import PosternCore
import PosternWire

/// The datagram path of the TCP channel: DATAGRAM frames on the tunnel (docs/protocol.md §6.2).
/// Datagrams have no flow control: a full tunnel (not writable) drops them.
public final class TunnelDatagramPath: DatagramPath {
    public let session: TunnelSession

    public init(session: TunnelSession) {
        self.session = session
    }

    public var isOpen: Bool { session.isOpen }
    public var canSend: Bool { session.isWritable }

    /// The peer's frame limit less what DATAGRAM adds per datagram beyond DATA's port id: the
    /// peer's address and port.
    public func maxDatagramSize(for peer: Endpoint) -> Int {
        max(0, session.maxDataPayload - Self.overhead(for: peer))
    }

    /// Bytes a DATAGRAM payload holds besides the datagram, less DATA's port id (which
    /// `maxDataPayload` already leaves out). Measured on PosternWire's own encoding.
    public static func overhead(for peer: Endpoint) -> Int {
        if case .ip(let a) = peer.host, a.isIPv6 { return ipv6Overhead }
        return ipv4Overhead
    }

    static let ipv4Overhead = measure(Endpoint(.anyV4, 0))
    static let ipv6Overhead = measure(Endpoint(.anyV6, 0))

    private static func measure(_ peer: Endpoint) -> Int {
        var buffer = ByteBuffer()
        let frameLength = buffer.writeFrame(.datagram(.init(portID: 0, peer: peer, bytes: ByteBuffer())))
        return frameLength - Frame.headerLength - Frame.Data.prefixLength
    }

    public func send(portID: UInt32, peer: Endpoint, bytes: ByteBuffer) {
        session.send(.datagram(.init(portID: portID, peer: peer, bytes: bytes)))
    }

    /// Sends one IP packet as a PACKET frame (TUN mode, docs/protocol.md §10) if the tunnel can take
    /// it now and it fits a frame; false when dropped.
    public func sendPacket(_ packet: ByteBuffer) -> Bool {
        guard session.isOpen, session.isWritable, packet.readableBytes <= session.maxDataPayload else { return false }
        session.send(.packet(.init(bytes: packet)))
        return true
    }

    public func attach(portID: UInt32, _ receiver: DatagramPathReceiver) {
        session.register(Port(portID: portID, receiver: receiver))
    }

    public func detach(portID: UInt32) {
        session.unregister(portID)
    }

    /// The session's port-table entry for a datagram port: hands DATAGRAM frames to the receiver.
    private final class Port: TunnelPort {
        let portID: UInt32
        weak var receiver: DatagramPathReceiver?

        init(portID: UInt32, receiver: DatagramPathReceiver) {
            self.portID = portID
            self.receiver = receiver
        }

        func tunnelReceived(_ frame: Frame) {
            // Other relay frames for a datagram port have no meaning here; they are dropped.
            switch frame {
            case .datagram(let d): receiver?.datagramReceived(d.bytes, peer: d.peer, portID: portID)
            case .denied(let d): receiver?.datagramsDenied(d.count, portID: portID)
            default: break
            }
        }

        func tunnelBecameWritable() {}

        func tunnelClosed() { receiver?.datagramPathClosed(portID: portID) }
    }
}

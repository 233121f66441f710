import NIOCore
import PosternPacket

/// A packet device `TunRelay` can drive from its event loop without hopping through async calls: the
/// tun device, or the raw LAN presence's packet socket (issue 11). Both hand batches to one receiver
/// and take packets one at a time, all on `eventLoop`.
public protocol RelayedPacketDevice: PacketDevice {
    var eventLoop: EventLoop { get }
    /// Hands every batch read from now on to `receive`, on the event loop.
    func setReceiver(_ receive: @escaping ([ByteBuffer]) -> Void)
    /// Writes one packet now. False when the device is closed or refused it (counted by the device).
    @discardableResult func writePacket(_ packet: ByteBuffer) -> Bool
    /// Writes what one pass of the event loop brought; answers how many were written (the tun
    /// device merges consecutive TCP segments into one write, others write them one by one).
    func writePackets(_ packets: [ByteBuffer]) -> Int
    /// Closes the device at once, on the event loop.
    func closeNow()
}

extension RelayedPacketDevice {
    public func writePackets(_ packets: [ByteBuffer]) -> Int {
        packets.reduce(0) { $0 + (writePacket($1) ? 1 : 0) }
    }
}

extension TunDevice: RelayedPacketDevice {}

/// What happened to a packet device (wireguard-go's `tun.Event`).
public enum PacketDeviceEvent: Hashable, Sendable {
    case up
    case down
    case mtuChanged(Int)
}

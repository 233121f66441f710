/// What a tun device did with the kernel's offloads (`TunDevice`, issue 10): which it asked for and was
/// granted, and how often they were used. Shown per end by `postern ctl mediators` and `/metrics`, so
/// an operator sees whether TUN mode runs with super-packets or packet by packet.
public struct DeviceOffloadCounters: Hashable, Sendable, Codable {
    /// False when the operator turned offloads off (`--tun-offload off`): the device was opened
    /// without a virtio-net header.
    public var asked: Bool
    /// What the kernel granted, as `TunDevice.Offloads` names them ("csum,tso4,tso6,uso4,uso6"), or
    /// "none".
    public var offloads: String
    /// Reads that returned a super-packet, cut into segments before anything else saw them.
    public var superPacketsRead: UInt64
    /// Writes that carried several TCP segments merged into one the kernel cut again.
    public var coalescedWrites: UInt64
    /// Reads whose offload header did not fit their packet (dropped).
    public var offloadRefused: UInt64

    public init(asked: Bool, offloads: String, superPacketsRead: UInt64 = 0, coalescedWrites: UInt64 = 0, offloadRefused: UInt64 = 0) {
        self.asked = asked
        self.offloads = offloads
        self.superPacketsRead = superPacketsRead
        self.coalescedWrites = coalescedWrites
        self.offloadRefused = offloadRefused
    }
}

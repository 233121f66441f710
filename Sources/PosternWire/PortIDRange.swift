/// Which side chose a port id (docs/protocol.md §5, "Port ids"): the mediator counts from 1 below
/// `serverBit`; ids with `serverBit` set are the server's, named in a pipelined CONNECT (§5.3) to a
/// mediator that announced `pipelinedConnect` (§4.3). Neither side ever reuses an id in a session.
public enum PortIDRange {
    /// The top bit: set in every server-chosen id, never in a mediator's.
    public static let serverBit: UInt32 = 0x8000_0000
    /// The last id the mediator's own counter hands out; past it, it refuses to create ports.
    public static let lastMediatorID: UInt32 = serverBit - 1
    /// The first id a server hands out (`serverBit` itself is never used).
    public static let firstServerID: UInt32 = serverBit + 1

    public static func isServerChosen(_ portID: UInt32) -> Bool { portID & serverBit != 0 }
}

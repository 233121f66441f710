/// `--pcap FILE` (server and mediator): what the relayed sockets carried, as packets made up from the
/// bytes, goes into FILE (raw IP pcap, nanosecond timestamps), rotated at `maxBytes` into FILE.1,
/// FILE.2, ... with at most `maxFiles` files kept.
public struct PcapSettings: Hashable, Sendable {
    public var path: String
    public var maxBytes: Int
    public var maxFiles: Int

    public init(path: String, maxBytes: Int = 100 << 20, maxFiles: Int = 5) {
        self.path = path
        self.maxBytes = maxBytes
        self.maxFiles = maxFiles
    }
}

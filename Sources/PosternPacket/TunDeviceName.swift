/// The tun device name of a mediator in TUN mode, the same on every run so a restart finds what a
/// crashed run left (`ptm-acme` on the mediator, `pts-acme` on the server). Linux names hold at most
/// 15 bytes; a longer mediator name (or one with characters an interface name should not carry) is
/// replaced by 8 hex digits of its FNV-1a hash: `pts-9f3c01d2`.
public enum TunDeviceName {
    public static let mediatorPrefix = "ptm-"
    public static let serverPrefix = "pts-"
    static let maxLength = 15

    public static func make(prefix: String, mediator name: String) -> String {
        let fits = prefix.utf8.count + name.utf8.count <= maxLength
        let plain = name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || c == 0x2d || c == 0x5f
        }
        if fits && plain && !name.isEmpty { return prefix + name }
        var hash: UInt32 = 0x811c_9dc5
        for byte in name.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        let hex = String(hash, radix: 16)
        return prefix + String(repeating: "0", count: 8 - hex.count) + hex
    }
}

import CMNL

/// The attributes of one netlink message (or of a nested attribute payload), indexed by type and
/// read with libmnl's validating getters. Holds pointers into the message, so it only exists
/// inside the closure of `parse`; accessors copy values out.
struct NetlinkAttributes {
    private let table: [UInt16: UnsafePointer<nlattr>]

    /// Collects the attributes after the `headerSize`-byte family header of `message`.
    static func parse<R>(
        message: UnsafePointer<nlmsghdr>, headerSize: Int, _ body: (NetlinkAttributes) throws -> R
    ) rethrows -> R {
        let collector = Collector()
        withExtendedLifetime(collector) {
            // mnl_attr_parse stops quietly at the first attribute whose length does not fit, so a
            // truncated tail just loses attributes; the decoders treat required ones as missing.
            _ = mnl_attr_parse(
                message, UInt32(headerSize), Collector.callback, Unmanaged.passUnretained(collector).toOpaque())
        }
        return try body(NetlinkAttributes(table: collector.table))
    }

    /// Collects the attributes packed in `payload` (used for the records inside RTA_MULTIPATH).
    static func parse<R>(payload: UnsafeRawBufferPointer, _ body: (NetlinkAttributes) throws -> R) rethrows -> R {
        let collector = Collector()
        if let base = payload.baseAddress, payload.count > 0 {
            withExtendedLifetime(collector) {
                _ = mnl_attr_parse_payload(
                    base, payload.count, Collector.callback, Unmanaged.passUnretained(collector).toOpaque())
            }
        }
        return try body(NetlinkAttributes(table: collector.table))
    }

    func contains(_ type: some BinaryInteger) -> Bool { table[UInt16(truncatingIfNeeded: type)] != nil }

    /// A 32-bit attribute in host byte order; nil when absent or shorter than 4 bytes.
    func u32(_ type: some BinaryInteger) -> UInt32? {
        guard let attr = table[UInt16(truncatingIfNeeded: type)], mnl_attr_validate(attr, MNL_TYPE_U32) >= 0 else {
            return nil
        }
        return mnl_attr_get_u32(attr)
    }

    /// A NUL-terminated string attribute; nil when absent or not terminated.
    func string(_ type: some BinaryInteger) -> String? {
        guard let attr = table[UInt16(truncatingIfNeeded: type)], mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0,
            let text = mnl_attr_get_str(attr)
        else { return nil }
        return String(cString: text)
    }

    /// The raw payload bytes; nil when absent.
    func bytes(_ type: some BinaryInteger) -> [UInt8]? {
        withPayload(type) { Array($0) }
    }

    /// Runs `body` on the payload in place; nil when the attribute is absent.
    func withPayload<R>(_ type: some BinaryInteger, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        guard let attr = table[UInt16(truncatingIfNeeded: type)] else { return nil }
        let length = Int(mnl_attr_get_payload_len(attr))
        guard length > 0, let base = mnl_attr_get_payload(attr) else {
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return try body(UnsafeRawBufferPointer(start: base, count: length))
    }

    /// Receives attributes from libmnl's C callback; reached through an unretained context pointer
    /// that `parse` keeps alive for the duration of the call.
    private final class Collector {
        var table: [UInt16: UnsafePointer<nlattr>] = [:]

        static let callback: mnl_attr_cb_t = { attr, data in
            guard let attr, let data else { return MNL_CB_ERROR }
            let collector = Unmanaged<Collector>.fromOpaque(data).takeUnretainedValue()
            // mnl_attr_get_type masks NLA_F_NESTED / NLA_F_NET_BYTEORDER. The kernel sends each
            // type once per level; should it repeat one, the first wins (as in iproute2).
            let type = mnl_attr_get_type(attr)
            if collector.table[type] == nil { collector.table[type] = attr }
            return MNL_CB_OK
        }
    }
}

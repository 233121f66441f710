import CMNL

/// One rtnetlink message copied out of the receive buffer, so it can be decoded after the dump
/// finished (and decoders can be tested on hand-built bytes). Stored as `UInt64` words because
/// libmnl reads headers and attributes in place and needs at least 4-byte alignment, which a
/// `[UInt8]` does not promise.
struct NetlinkMessage: Sendable {
    private var words: [UInt64]
    /// Length in bytes, as in `nlmsg_len`.
    let length: Int

    /// Copies the message `header` points at (`nlmsg_len` bytes).
    init(copying header: UnsafePointer<nlmsghdr>) {
        let length = Int(header.pointee.nlmsg_len)
        self.init(raw: UnsafeRawBufferPointer(start: UnsafeRawPointer(header), count: length))
    }

    /// Wraps encoded message bytes (a complete `nlmsghdr` followed by its payload).
    init(bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { NetlinkMessage(raw: $0) }
    }

    private init(raw: UnsafeRawBufferPointer) {
        length = raw.count
        words = [UInt64](repeating: 0, count: (raw.count + 7) / 8)
        words.withUnsafeMutableBytes { $0.copyMemory(from: raw) }
    }

    var type: UInt16 { withHeader { $0.pointee.nlmsg_type } }

    /// Runs `body` with the message in place. The pointer is only valid inside `body`.
    func withHeader<R>(_ body: (UnsafePointer<nlmsghdr>) throws -> R) rethrows -> R {
        try words.withUnsafeBytes { raw in
            try body(raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self))
        }
    }

    /// Decodes the family header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`, ...) that follows `nlmsghdr` and
    /// the attributes after it. Throws when the message is too short to hold `Header`: the kernel
    /// never sends that, so it means the bytes are not what we asked for.
    func withPayload<Header, R>(
        _ headerType: Header.Type, request: String,
        _ body: (Header, NetlinkAttributes) throws -> R
    ) throws -> R {
        try withHeader { nlh in
            let headerSize = MemoryLayout<Header>.size
            guard length >= MemoryLayout<nlmsghdr>.size, Int(nlh.pointee.nlmsg_len) == length,
                mnl_nlmsg_get_payload_len(nlh) >= headerSize
            else {
                throw NetlinkError.malformedReply(
                    request: request,
                    detail: "message of \(length) bytes is too short for a \(headerSize)-byte \(Header.self)")
            }
            let header = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh)!).loadUnaligned(as: Header.self)
            return try NetlinkAttributes.parse(message: nlh, headerSize: headerSize) { attributes in
                try body(header, attributes)
            }
        }
    }
}

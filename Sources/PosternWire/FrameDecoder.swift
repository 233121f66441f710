import NIOCore

/// Splits a byte stream into frames (docs/protocol.md §2). A plain value with one `mutating` step, so
/// it is tested byte by byte without any channel; `FrameDecoderHandler` only loops over it.
public struct FrameDecoder: Sendable {
    /// Largest payload accepted; a bigger length prefix ends the session before any byte is buffered.
    public var maxPayload: UInt32

    public init(maxPayload: UInt32 = FrameDecoder.defaultMaxPayload) {
        self.maxPayload = maxPayload
    }

    /// 1 MiB of data plus room for the largest fixed fields.
    public static let defaultMaxPayload: UInt32 = 1 << 20 + 1024

    /// Returns the next whole frame, or nil when more bytes are needed. Consumes only whole frames.
    public mutating func next(_ buffer: inout ByteBuffer) throws -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
            let type = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self),
            let flags = buffer.getInteger(at: buffer.readerIndex + 5, as: UInt8.self)
        else { return nil }
        // Check what we can before waiting for the payload, so garbage fails fast.
        guard length <= maxPayload else { throw WireError.frameTooLarge(length: length, limit: maxPayload) }
        guard flags == 0 else { throw WireError.nonZeroFlags(type: type, flags: flags) }
        guard Frame.knownTypes.contains(type) else { throw WireError.unknownType(type) }
        guard buffer.readableBytes >= Frame.headerLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: Frame.headerLength)
        var payload = buffer.readSlice(length: Int(length))!
        return try Frame.decode(type: type, payload: &payload)
    }
}
